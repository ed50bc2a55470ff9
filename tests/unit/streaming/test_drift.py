"""The live drift window against a reference profile built on synthetic training features: PSI, the alarm rules,
the ring buffer and the alarm history's hysteresis."""

from __future__ import annotations

import numpy as np
import pytest

from streamml.features.spec import FEATURE_NAMES, N_FEATURES
from streamml.models import profile
from streamml.models.profile import ReferenceProfile
from streamml.streaming.drift import (
    CalibrationSlices,
    DriftAlarms,
    DriftReport,
    DriftThresholds,
    DriftWindow,
    assess,
)
from streamml.streaming.monitor import DriftMonitor

GENRES = [name for name in FEATURE_NAMES if name.startswith("genre_")]
COUNTS = [name for name in FEATURE_NAMES if name.endswith("_count")]  # user_count, movie_count
NEW_USER = ["user_count", "user_rating_std", "user_genre_share"]  # a user without history has 0 in each
LIKE_RATE = 0.55


def population(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Training-like features: one-hot genres, counts that are often 0, the rest continuous."""
    x = rng.normal(size=(rows, N_FEATURES))
    for i, name in enumerate(FEATURE_NAMES):
        if name in GENRES:
            x[:, i] = rng.random(rows) < 0.25
        elif name in COUNTS or name in NEW_USER:
            x[:, i] = rng.poisson(4, rows) * (rng.random(rows) < 0.7)
    return x


def reference(rng: np.random.Generator, names: list[str] | None = None, rows: int = 20_000) -> ReferenceProfile:
    x = population(rng, rows)
    chosen = names or list(FEATURE_NAMES)
    x = x[:, [FEATURE_NAMES.index(n) for n in chosen]]
    return profile.build(x, chosen, rng.beta(2, 2, rows), rng.random(rows) < LIKE_RATE)


def filled(
    rng: np.random.Generator, rows: np.ndarray, scores: np.ndarray | None = None, likes: float = LIKE_RATE
) -> DriftWindow:
    window = DriftWindow(size=5000)
    scores = rng.beta(2, 2, len(rows)) if scores is None else scores
    for row, score in zip(rows.tolist(), scores.tolist(), strict=True):
        window.add(row, score)
        window.add_outcome(int(rng.random() < likes), score)
    return window


def column(name: str) -> int:
    return FEATURE_NAMES.index(name)


def test_a_window_from_the_reference_distribution_raises_no_alarm() -> None:
    rng = np.random.default_rng(0)
    ref = reference(rng)
    report = assess(filled(rng, population(rng, 5000)), ref, reference_version="7")

    assert report.ready and not report.alarm and report.reasons == [] and report.drifted == []
    assert set(report.psi) == set(FEATURE_NAMES) and report.window == 5000 and report.outcomes == 5000
    assert report.max_psi is not None and report.max_psi < 0.05
    assert report.score_psi is not None and report.score_psi < 0.05
    assert report.like_rate_shift is not None and abs(report.like_rate_shift) < 0.05
    assert report.like_rate_reference == pytest.approx(ref.like_rate, abs=1e-4)
    assert report.reference_version == "7"


def test_the_vectorised_psi_is_the_profiles_psi_of_each_column() -> None:
    rng = np.random.default_rng(1)
    ref = reference(rng)
    rows = population(rng, 3000)
    rows[:, column("movie_count")] += 2.0  # shifted, so the PSI is not ~0 everywhere
    rows[::7, column("user_mean_shrunk")] = np.nan  # left out, as the profile's histogram leaves it out
    window = filled(rng, rows)
    report = assess(window, ref)
    for i, name in enumerate(FEATURE_NAMES):
        expected = ref.features[name].psi(window.features()[:, i])
        assert expected is not None
        assert report.psi[name] == pytest.approx(expected, abs=1e-4), name
    live = ref.features["user_mean_shrunk"].shares_of(window.features()[:, column("user_mean_shrunk")])
    assert report.histograms["user_mean_shrunk"].live == pytest.approx(live.tolist(), abs=1e-4)
    assert report.score_psi == pytest.approx(ref.score.psi(window.scores()), abs=1e-4)


def test_inverted_genres_drift_and_raise_an_alarm_that_names_them() -> None:
    rng = np.random.default_rng(2)
    ref = reference(rng)
    rows = population(rng, 5000)
    inverted = GENRES[:4]
    for name in inverted:
        rows[:, column(name)] = 1.0 - rows[:, column(name)]
    report = assess(filled(rng, rows), ref, thresholds=DriftThresholds(min_drifted_features=3))

    assert set(report.drifted) == set(inverted)
    assert all(report.psi[name] > 0.25 for name in inverted)
    assert report.max_feature in inverted and report.max_psi == max(report.psi[n] for n in inverted)
    assert report.alarm and len(report.reasons) == 1
    assert report.reasons[0].startswith("4 features with PSI >= 0.25 (alarm at 3)")
    # The feature rule is off by default (measured, shown, not alarmed on).
    off = assess(filled(rng, rows), ref)
    assert len(off.drifted) == 4 and not off.alarm
    assert all(name in report.reasons[0] for name in inverted)
    # Two drifted features are not enough for the default rule; they are for a stricter one.
    two = assess(filled(rng, rows), ref, thresholds=DriftThresholds(min_drifted_features=5))
    assert len(two.drifted) == 4 and not two.alarm


def test_a_new_user_population_drifts_the_user_counts() -> None:
    rng = np.random.default_rng(3)
    ref = reference(rng)
    rows = population(rng, 5000)
    rows[:, [column(name) for name in NEW_USER]] = 0.0
    report = assess(filled(rng, rows), ref, thresholds=DriftThresholds(min_drifted_features=3))
    assert set(report.drifted) == set(NEW_USER)
    assert report.alarm and all(name in report.reasons[0] for name in NEW_USER)
    share_at_zero = report.histograms["user_count"]
    assert share_at_zero.edges[0] == 0.0 and share_at_zero.live[0] == 1.0 and share_at_zero.reference[0] < 0.5


def test_score_psi_and_a_calibration_gap_raise_their_own_reasons() -> None:
    rng = np.random.default_rng(4)
    ref = reference(rng)
    rows = population(rng, 5000)
    for i in GENRES[:1]:
        rows[:, column(i)] = 1.0  # every request of the first genre: its slice fills
    scores = rng.beta(8, 2, 5000)
    window = filled(rng, rows, scores=scores, likes=0.2)
    slices = CalibrationSlices(size=500, overall=500)
    for row, score in zip(rows[-600:].tolist(), scores[-600:].tolist(), strict=True):
        slices.add(row, int(rng.random() < 0.2), score)
    default = assess(window, ref, slices=slices)
    assert [r.split()[0] for r in default.reasons] == ["calibration"]  # the score rule is off by default (shown)
    report = assess(window, ref, thresholds=DriftThresholds(score_psi=0.25), slices=slices)
    assert report.drifted == [GENRES[0]] and report.alarm  # drifted, but the feature rule is off
    assert report.score_psi is not None and report.score_psi > 0.25
    assert report.like_rate_shift is not None and report.like_rate_shift < -0.3  # shown; not a rule of its own
    assert report.like_rate_predicted is not None and report.like_rate_predicted > 0.7
    assert [r.split()[0] for r in report.reasons] == ["score", "calibration"]
    assert f"{report.score_psi:.3f} >= 0.25" in report.reasons[0]
    genre = GENRES[0].removeprefix("genre_")
    assert report.calibration["all"].n == 500 and report.calibration[genre].gap < -0.5
    assert "all 0.2" in report.reasons[1] and genre in report.reasons[1]


def test_calibration_slices_hold_each_genres_latest_joins_and_alarm_only_when_full() -> None:
    slices = CalibrationSlices(size=3, genres=[("drama", 0), ("comedy", 1)], overall=3)
    for i in range(5):
        slices.add([1.0, 0.0], label=i % 2, score=0.9)
    slices.add([0.0, 1.0], label=1, score=0.1)
    calibration = slices.calibration()
    assert calibration["all"].n == 3 and calibration["drama"].n == 3 and calibration["comedy"].n == 1
    assert calibration["drama"].live == pytest.approx(1 / 3, abs=1e-4)  # labels 0, 1, 0 of the last three
    assert calibration["drama"].gap == pytest.approx(1 / 3 - 0.9, abs=1e-4)
    rng = np.random.default_rng(9)
    ref = reference(rng)
    window = filled(rng, population(rng, 2000))
    reasons = assess(window, ref, thresholds=DriftThresholds(min_window=2000), slices=slices).reasons
    assert len(reasons) == 1 and "drama" in reasons[0] and "comedy" not in reasons[0]  # comedy's 1 join: not full
    slices.clear()
    assert slices.calibration() == {}
    default = CalibrationSlices(size=3, genres=[("drama", 0)])
    assert (default.capacity("all"), default.capacity("drama")) == (6, 3)  # all requests hold twice a genre's joins


def test_no_alarm_before_the_window_holds_min_window_predictions() -> None:
    rng = np.random.default_rng(5)
    ref = reference(rng)
    rows = population(rng, 1999)
    for name in GENRES[:5]:
        rows[:, column(name)] = 1.0 - rows[:, column(name)]
    window = filled(rng, rows, likes=0.0)
    strict = DriftThresholds(min_drifted_features=3, min_window=2000)
    early = assess(window, ref, thresholds=strict)
    assert not early.ready and not early.alarm and early.reasons == []
    assert len(early.drifted) == 5  # measured and shown, only not acted on
    window.add(rows[0].tolist(), 0.5)
    later = assess(window, ref, thresholds=strict)
    assert later.ready and later.alarm and later.window == 2000


def test_features_missing_from_the_profile_are_skipped() -> None:
    rng = np.random.default_rng(6)
    names = ["movie_year", "genre_drama", "user_count"]  # not in the window's order
    ref = reference(rng, names)
    rows = population(rng, 3000)
    rows[:, column("genre_drama")] = 1.0 - rows[:, column("genre_drama")]
    window = filled(rng, rows)
    report = assess(window, ref)
    assert set(report.psi) == set(report.histograms) == set(names)
    assert report.drifted == ["genre_drama"] and report.max_feature == "genre_drama"
    assert report.psi["movie_year"] == pytest.approx(
        ref.features["movie_year"].psi(window.features()[:, column("movie_year")]), abs=1e-4
    )
    empty = assess(window, ReferenceProfile(features={}, score=ref.score, like_rate=0.5, rows=1))
    assert empty.psi == {} and empty.max_psi is None and empty.max_feature is None and not empty.drifted


def test_an_empty_window_reports_nothing_and_serialises() -> None:
    rng = np.random.default_rng(7)
    report = assess(DriftWindow(), reference(rng))
    assert report.window == 0 and not report.ready and report.psi == {} and report.score_psi is None
    assert report.like_rate_live is None and report.like_rate_shift is None and report.like_rate_predicted is None
    assert DriftReport.model_validate_json(report.model_dump_json()) == report


def test_the_report_is_small_json_with_live_shares_over_the_reference_bins() -> None:
    rng = np.random.default_rng(8)
    ref = reference(rng)
    report = assess(filled(rng, population(rng, 5000)), ref)
    text = report.model_dump_json()
    assert len(text) < 30_000
    again = DriftReport.model_validate_json(text)
    assert again == report
    for name, hist in again.histograms.items():
        assert len(hist.live) == len(hist.reference) == len(hist.edges) + 1 == len(ref.features[name].shares)
        assert sum(hist.live) == pytest.approx(1.0, abs=1e-3)
    assert again.score_histogram is not None and sum(again.score_histogram.live) == pytest.approx(1.0, abs=1e-3)


def test_the_ring_buffer_replaces_the_oldest_rows() -> None:
    window = DriftWindow(size=4, n_features=2)
    for i in range(6):
        window.add((float(i), -float(i)), i / 10)
    assert len(window) == 4 and window.total == 6
    assert sorted(window.features()[:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0]
    assert window.features()[0].tolist() == [4.0, -4.0]  # row 0 (then 4) was overwritten in place
    assert sorted(window.scores().tolist()) == pytest.approx([0.2, 0.3, 0.4, 0.5])
    for label in (1, 1, 1, 0, 0):
        window.add_outcome(label)
    assert window.outcomes == 4 and sorted(window.labels().tolist()) == [0.0, 0.0, 1.0, 1.0]
    assert np.isnan(window.joined_scores()).all()
    with pytest.raises(ValueError):
        window.add((1.0, 2.0, 3.0), 0.5)
    window.clear()
    assert len(window) == 0 and window.outcomes == 0 and window.total == 0
    with pytest.raises(ValueError):
        DriftWindow(size=0)


def alarm_report(alarm: bool, ready: bool = True, reason: str = "score PSI 0.300 >= 0.25") -> DriftReport:
    empty = ReferenceProfile(features={}, score=profile.Histogram((), (1.0,)), like_rate=0.5, rows=1)
    base = assess(DriftWindow(size=1), empty)
    return base.model_copy(update={"alarm": alarm, "ready": ready, "reasons": [reason] if alarm else []})


def test_alarms_clear_only_after_k_calm_assessments_in_a_row() -> None:
    alarms = DriftAlarms(clear_after=3)
    calm, drifted = alarm_report(False), alarm_report(True)
    assert alarms.update(calm, now=1.0) is None and alarms.entries() == []

    assert alarms.update(drifted, now=2.0) == "onset"
    assert alarms.update(alarm_report(True, reason="another"), now=4.0) is None  # the same alarm, still active
    assert alarms.update(calm, now=6.0) is None
    assert alarms.update(calm, now=8.0) is None
    assert alarms.update(drifted, now=10.0) is None  # back above: the calm count starts again
    assert alarms.update(calm, now=12.0) is None
    assert alarms.update(alarm_report(False, ready=False), now=13.0) is None  # too few predictions: no vote
    assert alarms.update(calm, now=14.0) is None
    assert alarms.active is not None
    assert alarms.update(calm, now=16.0) == "cleared"
    assert alarms.active is None
    assert alarms.entries() == [{"onset": 2.0, "cleared": 16.0, "reasons": ["score PSI 0.300 >= 0.25"]}]

    assert alarms.update(alarm_report(False, ready=False), now=17.0) is None
    assert alarms.update(drifted, now=18.0) == "onset"
    assert [e["cleared"] for e in alarms.entries()] == [16.0, None]


def test_alarm_history_is_bounded() -> None:
    alarms = DriftAlarms(clear_after=1, max_history=3)
    for t in range(5):
        alarms.update(alarm_report(True), now=float(2 * t))
        alarms.update(alarm_report(False), now=float(2 * t + 1))
    assert [e["onset"] for e in alarms.entries()] == [4.0, 6.0, 8.0]
    with pytest.raises(ValueError):
        DriftAlarms(clear_after=0)


def test_an_alarm_needs_persist_firing_assessments_in_a_row() -> None:
    alarms = DriftAlarms(persist=2)
    assert alarms.update(alarm_report(True), now=1.0) is None
    assert alarms.update(alarm_report(False), now=2.0) is None  # one noisy window: no alarm
    assert alarms.update(alarm_report(True), now=3.0) is None
    assert alarms.update(alarm_report(True), now=4.0) == "onset"
    assert alarms.entries()[0]["onset"] == 4.0


def test_the_monitor_compares_the_serving_versions_window_with_its_profile() -> None:
    rng = np.random.default_rng(11)
    ref = reference(rng)
    asked: list[str] = []

    def profiles(version: str) -> ReferenceProfile | None:
        asked.append(version)
        return ref if version == "2" else None

    monitor = DriftMonitor(profiles, DriftThresholds(min_window=3000), window=5000, quality_window=50)
    rows = population(rng, 3000)
    for row in rows.tolist():
        monitor.observe(row, 0.5, "1")
    assert monitor.assess(now=1.0) is None and monitor.report is None  # version 1 has no profile
    for row in rows.tolist():
        monitor.observe(row, 0.9, "2")
        monitor.joined(row, 0, 0.9, "2")
    monitor.joined(rows[0].tolist(), 1, 0.9, "1")  # an old version's join: not in the window
    monitor.assess(now=2.0)
    assert monitor.report is not None and monitor.report.window == 3000 and monitor.report.outcomes == 3000
    assert monitor.report.reference_version == "2" and monitor.report.alarm
    assert asked == ["1", "2"]


def test_the_retrain_trigger_acts_once_per_alarm_within_its_cooldown_and_retries_failures() -> None:
    from streamml.streaming.drift import Alarm
    from streamml.streaming.monitor import RetrainTrigger

    calls: list[dict[str, object]] = []
    fail = [True]

    def trigger(conf: dict[str, object]) -> str:
        calls.append(conf)
        if fail[0]:
            raise ConnectionError("airflow down")
        return f"run-{len(calls)}"

    retrain = RetrainTrigger(trigger, cooldown=100.0, retry_seconds=10.0)
    first = Alarm(onset=0.0, reasons=["score PSI 0.400 >= 0.25"])
    assert retrain(None, now=0.0) is None and calls == []
    last = retrain(first, now=1.0)
    assert last is not None and "airflow down" in last["error"]
    assert retrain(first, now=5.0) == last and len(calls) == 1  # not before retry_seconds
    fail[0] = False
    last = retrain(first, now=12.0)
    assert last is not None and last["dag_run_id"] == "run-2" and calls[-1] == {"reason": "score PSI 0.400 >= 0.25"}
    assert retrain(first, now=20.0) == last and len(calls) == 2  # the same alarm: once
    assert retrain(Alarm(onset=50.0, reasons=["again"]), now=50.0) == last and len(calls) == 2  # cooldown
    assert retrain(Alarm(onset=200.0, reasons=["later"]), now=200.0)["dag_run_id"] == "run-3"  # type: ignore[index]
