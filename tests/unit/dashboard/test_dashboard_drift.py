"""The Drift page's data: the drift object of ``metrics:latest`` read through a small fake, shaped for the charts and
tables, with every part of it possibly absent."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from streamml.dashboard import charts, frames_drift, live_metrics
from streamml.dashboard.errors import ServiceDown
from streamml.models import profile
from streamml.names import METRICS_DRIFT
from streamml.streaming.drift import BinShares, DriftReport, DriftThresholds, DriftWindow, assess

NAMES = ["user_count", "movie_mean_shrunk", "genre_drama"]


class FakeRedis:
    """``GET`` over a dict; ``down`` fails like a dead server."""

    def __init__(self, down: bool = False) -> None:
        self.values: dict[str, bytes] = {}
        self.down = down

    def get(self, key: str) -> bytes | None:
        if self.down:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return self.values.get(key)


def report(shift_drama: bool = True, rows: int = 3000) -> DriftReport:
    """A real report: a profile of synthetic training rows and a window where genre_drama is inverted."""
    rng = np.random.default_rng(0)

    def sample(n: int) -> np.ndarray:
        return np.column_stack([rng.poisson(3, n), rng.normal(3.5, 0.5, n), rng.random(n) < 0.3])

    ref = profile.build(sample(5000), NAMES, rng.beta(2, 2, 5000), rng.random(5000) < 0.5)
    live = sample(rows)
    if shift_drama:
        live[:, 2] = 1 - live[:, 2]
    window = DriftWindow(size=rows, n_features=3)
    for row in live.tolist():
        window.add(row, float(rng.beta(2, 2)))
        window.add_outcome(int(rng.random() < 0.5))
    return assess(window, ref, NAMES, DriftThresholds(min_drifted_features=1, min_window=1000), reference_version="4")


def snapshot(drift: Any = None, **fields: Any) -> bytes:
    base: dict[str, Any] = {"at": 1000.0, "model_version": "4", "window": 10}
    if drift is not None:
        base["drift"] = drift
    return json.dumps({**base, **fields}).encode()


def published(rep: DriftReport, alarms: list[dict[str, Any]] | None = None, retrain: Any = None) -> dict[str, Any]:
    return {**rep.model_dump(mode="json"), "alarms": alarms or [], "retrain": retrain}


def test_read_drift_reads_the_report_the_alarms_and_the_retrain() -> None:
    rep = report()
    alarms = [
        {"onset": 900.0, "cleared": 950.0, "reasons": ["old"]},
        {"onset": 990.0, "cleared": None, "reasons": ["x"]},
    ]
    retrain = {"triggered_at": 995.0, "dag_run_id": "drift__2026-01-01", "reason": "score PSI 0.4 >= 0.25"}
    r = FakeRedis()
    r.values[METRICS_DRIFT] = snapshot(published(rep, alarms, retrain))

    view = live_metrics.read_drift(r)

    assert view.report == rep and view.problem is None
    assert view.alarms == alarms and view.retrain == retrain
    assert view.snapshot_at == 1000.0 and view.model_version == "4"
    assert view.age_seconds(now=1012.0) == pytest.approx(12.0)


def test_a_missing_snapshot_or_drift_object_says_why_there_is_no_report() -> None:
    nothing = live_metrics.read_drift(FakeRedis())
    assert nothing.report is None and nothing.snapshot_at is None and nothing.problem is None
    assert "`metrics:drift` is empty" in frames_drift.missing_reason(nothing)

    r = FakeRedis()
    for raw in (snapshot(), snapshot(drift=None), json.dumps({"at": 5.0, "model_version": "2", "drift": None})):
        r.values[METRICS_DRIFT] = raw if isinstance(raw, bytes) else raw.encode()
        view = live_metrics.read_drift(r)
        assert view.report is None and view.problem is None and view.snapshot_at is not None
        reason = frames_drift.missing_reason(view)
        assert reason.startswith("No drift report has been published yet")
        assert "reference profile" in reason and "5,000 predictions" in reason  # what the monitor needs
    assert "(serving v2)" in reason
    assert "500 predictions" in frames_drift.missing_reason(view, DriftThresholds(min_window=500))


def test_an_unreadable_drift_object_is_a_problem_not_an_exception() -> None:
    for raw, problem in (
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (snapshot(drift=[1]), "not an object"),
        (snapshot(drift={"window": "lots"}), "cannot be read"),
    ):
        view = frames_drift.drift_view(raw)
        assert view.report is None and view.problem is not None and problem in view.problem, (raw, view)
        assert "but " + view.problem in frames_drift.missing_reason(view)
    # Entries the page cannot use are dropped; the report itself still reads.
    lenient = frames_drift.drift_view(
        snapshot(drift={**published(report()), "alarms": ["x", {"onset": 1}], "retrain": 3})
    )
    assert lenient.report is not None and lenient.alarms == [{"onset": 1}] and lenient.retrain is None
    assert frames_drift.drift_view(snapshot(drift={**published(report()), "alarms": 5})).alarms == []


def test_read_drift_says_redis_is_down() -> None:
    with pytest.raises(ServiceDown, match="Redis is not reachable: .*Connection refused"):
        live_metrics.read_drift(FakeRedis(down=True))


def test_psi_frame_is_sorted_largest_first_with_the_drifted_flag() -> None:
    rep = report()
    frame = frames_drift.psi_frame(rep)
    assert list(frame.columns) == list(frames_drift.PSI_COLUMNS)
    assert frame["feature"].iloc[0] == "genre_drama" and bool(frame["drifted"].iloc[0])
    assert frame["psi"].is_monotonic_decreasing and set(frame["feature"]) == set(NAMES)
    assert frame["drifted"].tolist() == [p >= rep.thresholds.feature_psi for p in frame["psi"]]
    flat = rep.model_copy(update={"psi": {"b": 0.1, "a": 0.1, "c": 0.3}})
    assert frames_drift.psi_frame(flat)["feature"].tolist() == ["c", "a", "b"]  # ties by name
    assert frames_drift.psi_frame(rep.model_copy(update={"psi": {}})).empty


def test_histogram_options_rank_by_psi_and_end_with_the_score() -> None:
    rep = report()
    options = frames_drift.histogram_options(rep)
    assert options[0] == "genre_drama" and options[-1] == frames_drift.SCORE and len(options) == 4
    assert frames_drift.histogram_of(rep, frames_drift.SCORE) == rep.score_histogram
    assert frames_drift.histogram_of(rep, "genre_drama") == rep.histograms["genre_drama"]
    assert frames_drift.histogram_of(rep, "nope") is None
    assert frames_drift.histogram_options(rep.model_copy(update={"score_histogram": None}))[-1] != "score"


def test_bin_labels_name_each_bin_by_its_edges() -> None:
    assert frames_drift.bin_labels([]) == (["all"], ["all"])
    assert frames_drift.bin_labels([0.0]) == (["≤ 0", "> 0"], ["≤ 0", "> 0"])
    short, full = frames_drift.bin_labels([0.0, 1.0, 2500.0])
    assert short == ["≤ 0", "≤ 1", "≤ 2,500", "> 2,500"] and full == ["≤ 0", "(0, 1]", "(1, 2,500]", "> 2,500"]
    assert frames_drift.bin_labels([-1.26800183, 0.5])[1] == ["≤ -1.27", "(-1.27, 0.5]", "> 0.5"]
    assert frames_drift.bin_labels([335_507.0, 1_202_160.0, 2.5e9])[0] == ["≤ 336k", "≤ 1.2M", "≤ 2.5G", "> 2.5G"]
    assert frames_drift.bin_labels([12.345, 1234.56, 9999.7])[0] == ["≤ 12.3", "≤ 1235", "≤ 10000", "> 10000"]
    # Edges that three digits cannot tell apart get more.
    assert frames_drift.bin_labels([0.12341, 0.12349])[1] == ["≤ 0.1234", "(0.1234, 0.1235]", "> 0.1235"]
    assert frames_drift.bin_labels([1_202_160.0, 1_204_000.0])[0] == ["≤ 1.202M", "≤ 1.204M", "> 1.204M"]


def test_histogram_frame_has_both_populations_over_the_same_bins() -> None:
    bins = BinShares(edges=[0.0, 2.0], reference=[0.3, 0.4, 0.3], live=[1.0, 0.0, 0.0])
    frame = frames_drift.histogram_frame(bins)
    assert list(frame.columns) == list(frames_drift.HISTOGRAM_COLUMNS)
    assert frame["population"].tolist() == ["reference"] * 3 + ["live"] * 3
    assert frame["bin"].tolist()[:3] == ["≤ 0", "≤ 2", "> 2"] and frame["range"].tolist()[:3] == [
        "≤ 0",
        "(0, 2]",
        "> 2",
    ]
    assert frame["order"].tolist() == [0, 1, 2] * 2
    assert frame.groupby("population")["share"].sum().tolist() == pytest.approx([1.0, 1.0])
    drama = frames_drift.histogram_frame(report().histograms["genre_drama"])
    live = drama[drama["population"] == "live"]["share"].tolist()
    reference = drama[drama["population"] == "reference"]["share"].tolist()
    assert live[1] > 0.6 > reference[1]  # inverted: most live rows are dramas, most training rows were not


def test_alarms_frame_is_newest_first_and_says_which_is_active() -> None:
    alarms = [
        {"onset": 100.0, "cleared": 160.0, "reasons": ["score PSI 0.300 >= 0.25"]},
        {"onset": 7000.0, "cleared": None, "reasons": ["a", "b"]},
        {"onset": "garbage", "cleared": None, "reasons": []},
        {"cleared": 5.0},
    ]
    frame = frames_drift.alarms_frame(alarms, now=7000.0 + 3 * 3600)
    assert list(frame.columns) == list(frames_drift.ALARM_COLUMNS) and len(frame) == 2
    assert frame["state"].tolist() == ["active", "cleared"]
    assert frame["onset"].iloc[0] == pd.Timestamp(7000, unit="s", tz="UTC") and pd.isna(frame["cleared"].iloc[0])
    assert frame["duration"].tolist() == ["3.0 h", "60 s"]
    assert frame["reasons"].tolist() == ["a; b", "score PSI 0.300 >= 0.25"]
    assert frames_drift.alarms_frame(alarms)["duration"].iloc[0] == ""  # active, and no "now" to measure to
    assert frames_drift.alarms_frame([]).empty
    assert frames_drift.active_onset(alarms) == 7000.0 and frames_drift.active_onset(alarms[:1]) is None


def test_duration_and_retrain_texts() -> None:
    assert [frames_drift.duration_text(s) for s in (-1, 45, 720, 3 * 3600)] == ["0 s", "45 s", "12 min", "3.0 h"]
    assert frames_drift.retrain_text(None) is None and frames_drift.retrain_text({}) is None
    text = frames_drift.retrain_text({"triggered_at": 0, "dag_run_id": "drift__1", "reason": "score PSI 0.4"})
    assert text == "Triggered 1970-01-01 00:00:00 UTC, DAG run `drift__1`: score PSI 0.4"
    assert frames_drift.retrain_text({"dag_run_id": "r"}) == "Triggered at an unknown time, DAG run `r`"


def test_psi_bars_sort_largest_on_top_and_draw_the_threshold() -> None:
    rep = report()
    spec = charts.psi_bars(frames_drift.psi_frame(rep), rep.thresholds.feature_psi).to_dict()
    bars, rule = spec["layer"]
    assert bars["encoding"]["y"]["sort"] == frames_drift.psi_frame(rep)["feature"].tolist()
    assert bars["encoding"]["color"]["scale"]["domain"] == ["drifted", "stable"]
    assert bars["encoding"]["x"]["scale"]["type"] == "sqrt" and "square-root" in bars["encoding"]["x"]["title"]
    assert spec["height"] == 60 + 20 * len(rep.psi)
    assert bars["encoding"]["x"]["scale"]["domain"] == [0, max(rep.psi.values())]
    calm = frames_drift.psi_frame(rep.model_copy(update={"psi": {"a": 0.01, "b": 0.02}}))
    x = charts.psi_bars(calm, 0.25).to_dict()["layer"][0]["encoding"]["x"]
    assert x["scale"]["domain"] == [0, pytest.approx(0.3)]  # the threshold stays on the axis
    assert rule["mark"]["type"] == "rule" and rule["encoding"]["x"]["field"] == "threshold"
    assert spec["datasets"][rule["data"]["name"]] == [{"threshold": 0.25}]


def test_histogram_compare_keeps_the_bins_in_order_and_shares_as_percent() -> None:
    frame = frames_drift.histogram_frame(
        BinShares(edges=[10.0, 2.0e3], reference=[0.2, 0.5, 0.3], live=[0.1, 0.1, 0.8])
    )
    encoding = charts.histogram_compare(frame, "user_count bin").to_dict()["encoding"]
    assert encoding["x"]["sort"] == ["≤ 10", "≤ 2,000", "> 2,000"] and encoding["x"]["title"] == "user_count bin"
    assert {"field": "range", "title": "bin", "type": "nominal"} in encoding["tooltip"]
    assert encoding["y"]["axis"]["format"] == ".0%"
    assert encoding["color"]["scale"]["domain"] == ["reference", "live"]
