from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from streaming_fakes import FakeRedis, Msg

from streamml.features.spec import FEATURE_NAMES, N_FEATURES, NO_PREVIOUS_RATING
from streamml.stores.metrics import RedisMetricsStore
from streamml.streaming.messages import Feedback, Prediction, ShadowPrediction
from streamml.streaming.metrics import LOG_HEADER, SHADOW_IDLE_SECONDS, MetricLog, MetricsState, rolling_metrics

SINCE = FEATURE_NAMES.index("seconds_since_user_prev_rating")


def pred(i: int, score: float, event_ts: int = 10, since: float = NO_PREVIOUS_RATING) -> Prediction:
    features = [0.0] * N_FEATURES
    features[SINCE] = since
    return Prediction(
        request_id=f"r{i}", user_id=1, movie_id=2, score=score, label=int(score >= 0.5), model_name="m",
        model_version="3", feature_version=1, cold_start=False, event_ts=event_ts, sent_at=100.0, scored_at=100.02,
        features=tuple(features), globals_used=(0, 0.0, 0),
    )  # fmt: skip


def fb(i: int, rating: float, event_ts: int = 10, movie_id: int = 2) -> Feedback:
    return Feedback(request_id=f"r{i}", user_id=1, movie_id=movie_id, rating=rating, event_ts=event_ts)


def test_staleness_counts_the_earlier_ratings_a_prediction_was_scored_without() -> None:
    state = MetricsState()
    for k, ts in enumerate((100, 200, 300)):  # three earlier ratings of user 1, on other movies
        state.add_feedback(fb(100 + k, 4.0, event_ts=ts, movie_id=50 + k), now=0)
    # Scored at t=400 having seen the rating at 100 only (last rating 300 s before): 200 and 300 were not applied.
    state.add_prediction(pred(1, 0.5, event_ts=400, since=300.0), now=0)
    joined = state.add_feedback(fb(1, 4.0, event_ts=400), now=0)
    assert joined is not None and joined.stale == 2
    # Scored having seen every earlier rating: none missing; the snapshot reports the share of stale predictions.
    state.add_prediction(pred(2, 0.5, event_ts=500, since=100.0), now=0)
    joined = state.add_feedback(fb(2, 4.0, event_ts=500), now=0)
    assert joined is not None and joined.stale == 0
    snap = state.snapshot(now=1, elapsed=1, lag={}, applied_ms=[10.0, 20.0, 30.0])
    assert snap.stale_share == 0.5 and snap.stale_mean == 1.0
    assert snap.applied_p50_ms == 20.0


def test_joins_in_either_order_and_computes_absolute_error() -> None:
    state = MetricsState()
    assert state.add_prediction(pred(1, 0.8), now=0) is None
    joined = state.add_feedback(fb(1, 4.5), now=1)
    assert joined is not None and joined.y_true == 1 and joined.absolute_error == pytest.approx(0.2)
    assert state.add_feedback(fb(2, 2.0), now=1) is None
    joined = state.add_prediction(pred(2, 0.3), now=2)
    assert joined is not None and joined.y_true == 0 and joined.absolute_error == pytest.approx(0.3)
    assert state.joined_total == 2 and not state.predictions and not state.feedback


def test_unjoined_state_expires_and_is_bounded() -> None:
    state = MetricsState(join_ttl=10, max_pending=3)
    for i in range(5):
        state.add_prediction(pred(i, 0.5), now=0)
    state.expire(now=1)
    assert len(state.predictions) == 3 and state.expired_total == 2
    state.expire(now=11)
    assert not state.predictions and state.expired_total == 5


def test_rolling_metrics_match_sklearn_and_the_window_is_bounded() -> None:
    rng = np.random.default_rng(0)
    state = MetricsState(window=100)
    y = rng.integers(0, 2, 300)
    s = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1)
    for i in range(300):
        state.add_prediction(pred(i, float(s[i])), now=0)
        state.add_feedback(fb(i, 5.0 if y[i] else 1.0), now=0)
    snap = state.snapshot(now=10, elapsed=2.0, lag={"0": 4})
    assert snap.window == 100 and snap.joined_total == 300
    assert snap.auc == pytest.approx(roc_auc_score(y[-100:], s[-100:]))
    assert snap.mae == pytest.approx(np.mean(np.abs(y[-100:] - s[-100:])))
    assert snap.throughput_per_s == pytest.approx(150.0)
    assert snap.latency_p50_ms == pytest.approx(20.0)
    assert rolling_metrics(np.array([1.0, 1.0]), np.array([0.2, 0.9]))["auc"] is None  # one class: undefined


def test_metric_log_continues_after_a_restart(tmp_path: Path) -> None:
    state = MetricsState()
    state.add_prediction(pred(1, 0.9), now=0)
    first = state.add_feedback(fb(1, 5.0), now=0)
    path = tmp_path / "metric_log.csv"
    MetricLog(path).append([first])  # type: ignore[list-item]
    MetricLog(path).append([first])  # type: ignore[list-item]  # "restarted": appends, header once
    lines = path.read_text().splitlines()
    assert lines[0] + "\n" == LOG_HEADER and len(lines) == 3
    assert lines[1].startswith("r1,1,0.900000,0.100000,3,")


def test_handler_routes_by_exact_topic_and_publishes_a_snapshot(tmp_path: Path) -> None:
    from streamml.names import METRICS_ERRORS, METRICS_LATEST
    from streamml.streaming.metrics import MetricsHandler, MetricsSnapshot

    clock = iter([0.0, 5.0])
    redis_fake = FakeRedis()
    handler = MetricsHandler(
        RedisMetricsStore(redis_fake), MetricLog(tmp_path / "log.csv"), lambda: {"0": 0}, publish_every=1.0,  # type: ignore[arg-type]
        metrics_topic="m", feedback_topic="fb", dlq_topic="dlq", shadow_topic="sh", clock=lambda: next(clock),
    )  # fmt: skip
    result = handler(
        [Msg(pred(1, 0.8).encode(), topic_="preds"), Msg(shadow(1, 0.9).encode(), topic_="sh"),
         Msg(fb(1, 5.0).encode(), topic_="fb"), Msg(b"{}", topic_="dlq")]
    )  # fmt: skip
    assert result.sink is not None
    result.sink()
    snap = MetricsSnapshot.model_validate_json(result.outputs[0].value)
    assert result.outputs[0].topic == "m"
    assert (snap.joined_total, snap.dlq_total) == (1, 1)
    assert snap.shadow is not None and snap.shadow.paired_total == 1
    assert redis_fake.store[METRICS_ERRORS] == ["0.200000"]
    assert METRICS_LATEST in redis_fake.store
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 2


def test_a_forged_prediction_is_dead_lettered_and_bad_feedback_only_counted(tmp_path: Path) -> None:
    from streamml.streaming.metrics import MetricsHandler

    handler = MetricsHandler(
        RedisMetricsStore(FakeRedis()), MetricLog(tmp_path / "log.csv"), lambda: {}, publish_every=60.0,  # type: ignore[arg-type]
        metrics_topic="m", feedback_topic="fb", dlq_topic="dlq", clock=lambda: 0.0,
    )  # fmt: skip
    nan_score = pred(1, 0.5).encode().replace(b'"score":0.5', b'"score":NaN')
    result = handler(
        [
            Msg(nan_score, topic_="preds"),
            Msg(b'{"rating": Infinity}', topic_="fb"),
            Msg(pred(2, 0.4).encode(), topic_="preds"),
        ]
    )
    assert [o.topic for o in result.outputs] == ["dlq"]
    assert result.refused == ["out_of_range"]
    assert handler.state.refused_total == 2 and len(handler.state.predictions) == 1


def shadow(i: int, score: float, version: str = "4", champion: str = "3") -> ShadowPrediction:
    return ShadowPrediction(
        request_id=f"r{i}", user_id=1, movie_id=2, score=score, model_name="m", model_version=version,
        champion_version=champion, feature_version=1, event_ts=10, scored_at=100.02,
    )  # fmt: skip


def test_shadow_scores_pair_with_their_request_in_any_arrival_order() -> None:
    rng = np.random.default_rng(3)
    state = MetricsState(window=1000)
    labels = rng.integers(0, 2, 300)
    ours, theirs = rng.uniform(size=300), np.clip(labels * 0.6 + rng.uniform(size=300) * 0.4, 0, 1)
    for i in range(300):
        order = i % 3  # shadow first, between, or after the join
        if order == 0:
            state.add_shadow(shadow(i, float(theirs[i])), now=0)
        state.add_prediction(pred(i, float(ours[i])), now=0)
        if order == 1:
            state.add_shadow(shadow(i, float(theirs[i])), now=0)
        state.add_feedback(fb(i, 5.0 if labels[i] else 1.0), now=0)
        if order == 2:
            state.add_shadow(shadow(i, float(theirs[i])), now=0)
    snap = state.snapshot(now=1, elapsed=1, lag={})
    assert snap.shadow is not None
    assert (snap.shadow.champion_version, snap.shadow.challenger_version, snap.shadow.paired_total) == ("3", "4", 300)
    assert snap.shadow.champion_auc == pytest.approx(roc_auc_score(labels, ours))
    assert snap.shadow.challenger_auc == pytest.approx(roc_auc_score(labels, theirs))
    assert not state.shadows and not state.awaiting_shadow


def test_a_new_pair_of_versions_starts_its_evidence_afresh_and_mismatched_champions_do_not_pair() -> None:
    state = MetricsState()
    for i, version in enumerate(["4", "4", "5"]):
        state.add_shadow(shadow(i, 0.5, version=version), now=0)
        state.add_prediction(pred(i, 0.5), now=0)
        state.add_feedback(fb(i, 5.0), now=0)
    state.add_shadow(shadow(9, 0.5, version="5", champion="2"), now=0)  # scored beside another champion
    state.add_prediction(pred(9, 0.5), now=0)
    state.add_feedback(fb(9, 5.0), now=0)
    snap = state.snapshot(now=1, elapsed=1, lag={})
    assert snap.shadow is not None and (snap.shadow.challenger_version, snap.shadow.paired_total) == ("5", 1)
    assert MetricsState().snapshot(now=1, elapsed=1, lag={}).shadow is None


def test_without_shadows_flowing_joins_do_not_wait_for_one() -> None:
    state = MetricsState()
    state.add_prediction(pred(1, 0.5), now=0)
    state.add_feedback(fb(1, 5.0), now=0)
    assert not state.awaiting_shadow
    state.add_shadow(shadow(2, 0.5), now=100)
    state.add_prediction(pred(3, 0.5), now=100 + SHADOW_IDLE_SECONDS + 1)
    state.add_feedback(fb(3, 5.0), now=100 + SHADOW_IDLE_SECONDS + 1)
    assert not state.awaiting_shadow
    state.expire(now=100 + state.join_ttl + 1)
    assert not state.shadows


def test_the_handler_publishes_the_drift_report_and_triggers_retraining_once(tmp_path: Path) -> None:
    from streamml import names
    from streamml.models import profile
    from streamml.streaming.drift import DriftThresholds
    from streamml.streaming.metrics import MetricsHandler, MetricsSnapshot
    from streamml.streaming.monitor import DriftMonitor, RetrainTrigger

    rng = np.random.default_rng(0)
    reference = profile.build(rng.normal(size=(2000, N_FEATURES)), FEATURE_NAMES, rng.uniform(size=2000), np.ones(2000))
    monitor = DriftMonitor(lambda v: reference, DriftThresholds(min_window=50), window=500, quality_window=50)
    runs: list[dict[str, object]] = []
    clock = iter(float(t) for t in range(1000))
    redis_fake = FakeRedis()
    handler = MetricsHandler(
        RedisMetricsStore(redis_fake), MetricLog(tmp_path / "log.csv"), lambda: {}, MetricsState(drift=monitor),  # type: ignore[arg-type]
        publish_every=1.0, feedback_topic="fb", clock=lambda: next(clock),
        retrain=RetrainTrigger(lambda conf: runs.append(conf) or "run-1"),
    )  # fmt: skip
    snaps = []
    for batch in range(4):
        msgs = []
        for i in range(batch * 60, batch * 60 + 60):
            msgs += [Msg(pred(i, 0.9).encode(), topic_="preds"), Msg(fb(i, 1.0).encode(), topic_="fb")]
        result = handler(msgs)
        assert result.sink is not None
        result.sink()
        snaps += [MetricsSnapshot.model_validate_json(o.value) for o in result.outputs]
    drifted = [s for s in snaps if s.drift is not None]
    assert drifted and all("histograms" not in s.drift for s in drifted if s.drift)
    last = drifted[-1].drift
    assert last is not None and last["alarm"] and last["calibration"]["all"]["gap"] < -0.8
    assert len(runs) == 1 and "calibration gap" in str(runs[0]["reason"])
    assert last["retrain"]["dag_run_id"] == "run-1" and last["alarms"][0]["cleared"] is None
    full = json.loads(redis_fake.store[names.METRICS_DRIFT])
    assert "histograms" in full["drift"] and full["model_version"] == "3"
    assert all(json.loads(h).get("drift") is None for h in redis_fake.store[names.METRICS_HISTORY])
