"""The scorer handler and the worker loop with small in-memory stand-ins for Kafka messages, Redis and producer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from streaming_fakes import Msg

from streamml import names
from streamml.errors import TransientError
from streamml.features import packing, spec
from streamml.streaming.messages import DeadLetter, Prediction, RatingRequest, ShadowPrediction
from streamml.streaming.scorer import ScorerHandler, ServingModel
from streamml.streaming.worker import BatchResult, Output, Worker


@dataclass
class MemoryFeatures:
    """The RedisFeatureStore surface the scorer uses, over dicts."""

    version: int | None = 1
    blobs: dict[str, bytes] = field(default_factory=dict)
    written: dict[str, bytes] = field(default_factory=dict)
    fail_writes: int = 0

    def current_version(self) -> int | None:
        return self.version

    def get_many(self, version: int, user_ids: list[int], movie_ids: list[int]) -> list[bytes | None]:
        keys = [names.user_features_key(version, u) for u in user_ids]
        keys += [names.movie_features_key(version, m) for m in movie_ids]
        return [self.blobs.get(k) for k in keys] + [self.blobs.get(names.globals_features_key(version))]

    def write_predictions(self, items: list[tuple[str, bytes]], ttl_seconds: int) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise TransientError("redis down")
        self.written.update(items)


def request(i: int, user: int = 1, movie: int = 10) -> bytes:
    return RatingRequest(request_id=f"r{i}", user_id=user, movie_id=movie, event_ts=1_000 + i, sent_at=1.0).encode()


@pytest.fixture
def store() -> MemoryFeatures:
    state = spec.FeatureState.from_catalog([10, 11], ["A (1999)", "B (2001)"], ["Comedy", "Drama|War"])
    state.apply(1, 10, 5.0, 100)
    state.apply(2, 10, 2.0, 200)
    users, movies, globals_state = packing.snapshot(state)
    blobs = {names.user_features_key(1, u): b for u, b in users.items()}
    blobs |= {names.movie_features_key(1, m): b for m, b in movies.items()}
    blobs[names.globals_features_key(1)] = packing.pack_globals(globals_state)
    return MemoryFeatures(blobs=blobs)


def like_rate_model() -> ServingModel:
    index = spec.FEATURE_NAMES.index("user_like_rate")
    return ServingModel("m", "7", lambda x: x[:, index])


def test_scores_equal_the_offline_features_and_model(store: MemoryFeatures) -> None:
    handler = ScorerHandler(store, like_rate_model, clock=lambda: 5.0)  # type: ignore[arg-type]
    result = handler([Msg(request(1, user=1)), Msg(request(2, user=2, movie=11)), Msg(request(3, user=99))])
    preds = [Prediction.model_validate_json(o.value) for o in result.outputs]
    assert [p.request_id for p in preds] == ["r1", "r2", "r3"]
    assert all(o.topic == names.TOPIC_PREDICTIONS for o in result.outputs)
    state = spec.FeatureState.from_catalog([10, 11], ["A (1999)", "B (2001)"], ["Comedy", "Drama|War"])
    state.apply(1, 10, 5.0, 100)
    state.apply(2, 10, 2.0, 200)
    for p in preds:
        expected = state.features(p.user_id, p.movie_id, p.event_ts)[spec.FEATURE_NAMES.index("user_like_rate")]
        assert p.score == pytest.approx(expected, abs=1e-12)
        assert (p.model_name, p.model_version, p.feature_version, p.scored_at) == ("m", "7", 1, 5.0)
    assert [p.cold_start for p in preds] == [False, True, True]  # movie 11 and user 99 were never rated
    assert result.sink is not None
    result.sink()
    assert set(store.written) == {"pred:r1", "pred:r2", "pred:r3"}


@pytest.mark.parametrize(
    "payload, problem",
    [
        (b"{not json", "json"),
        (json.dumps({"request_id": "x", "user_id": 1}).encode(), "movie_id"),
        (
            json.dumps({"request_id": "x", "user_id": "one", "movie_id": 1, "event_ts": 1, "sent_at": 1}).encode(),
            "user_id",
        ),
        (b"{" + b" " * 20_000 + b"}", "exceeds"),
        (None, "empty"),
    ],
)
def test_poison_goes_to_the_dlq_with_its_reason_and_origin(
    store: MemoryFeatures, payload: bytes | None, problem: str
) -> None:
    handler = ScorerHandler(store, like_rate_model)  # type: ignore[arg-type]
    result = handler([Msg(payload, partition_=2, offset_=41), Msg(request(1))])
    dlq = [o for o in result.outputs if o.topic == names.TOPIC_REQUESTS_DLQ]
    assert len(dlq) == 1
    record = DeadLetter.model_validate_json(dlq[0].value)
    assert (record.partition, record.offset, record.error_type) == (2, 41, "PoisonMessageError")
    assert problem in record.error.lower()
    assert sum(o.topic == names.TOPIC_PREDICTIONS for o in result.outputs) == 1


def test_no_feature_version_is_transient(store: MemoryFeatures) -> None:
    store.version = None
    with pytest.raises(TransientError):
        ScorerHandler(store, like_rate_model)([Msg(request(1))])  # type: ignore[arg-type]


@dataclass
class FakeProducer:
    undelivered: int = 0
    produced: list[tuple[str, Any]] = field(default_factory=list)

    def produce(self, topic: str, key: Any, value: bytes, on_delivery: Any) -> None:
        self.produced.append((topic, value))

    def poll(self, _: float) -> int:
        return 0

    def flush(self, _: float) -> int:
        return self.undelivered


@dataclass
class FakeConsumer:
    commits: list[list[Any]] = field(default_factory=list)

    def commit(self, asynchronous: bool, offsets: list[Any]) -> None:
        self.commits.append(offsets)


def test_worker_commits_one_past_the_highest_offset_per_partition_after_flush() -> None:
    consumer, producer = FakeConsumer(), FakeProducer()
    sunk: list[int] = []
    worker = Worker(
        consumer, producer, ["t"], lambda ms: BatchResult([Output("o", None, b"v")], lambda: sunk.append(1))
    )
    worker.process([Msg(b"a", 0, 5), Msg(b"b", 0, 9), Msg(b"c", 1, 3)])
    assert sunk == [1]
    assert producer.produced == [("o", b"v")]
    assert sorted((tp.partition, tp.offset) for tp in consumer.commits[0]) == [(0, 10), (1, 4)]


def test_worker_does_not_commit_when_delivery_fails() -> None:
    consumer, producer = FakeConsumer(), FakeProducer(undelivered=1)
    worker = Worker(consumer, producer, ["t"], lambda ms: BatchResult([Output("o", None, b"v")]))
    with pytest.raises(TransientError):
        worker.process([Msg(b"a")])
    assert consumer.commits == []


def test_worker_retries_a_transient_sink_failure_then_commits(
    store: MemoryFeatures, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.sleep", lambda _: None)
    store.fail_writes = 2
    consumer = FakeConsumer()
    worker = Worker(consumer, FakeProducer(), ["t"], ScorerHandler(store, like_rate_model))  # type: ignore[arg-type]
    worker.process([Msg(request(1))])
    assert "pred:r1" in store.written
    assert len(consumer.commits) == 1
    assert np.isfinite(Prediction.model_validate_json(store.written["pred:r1"]).score)


def test_shadow_scores_the_same_rows_on_the_same_features_and_never_writes_results(store: MemoryFeatures) -> None:
    seen: list[np.ndarray] = []

    def challenger_predict(x: np.ndarray) -> np.ndarray:
        seen.append(x.copy())
        return np.full(len(x), 0.25)

    challenger = ServingModel("m", "8", challenger_predict)
    handler = ScorerHandler(store, like_rate_model, clock=lambda: 5.0, shadow=lambda: challenger)  # type: ignore[arg-type]
    result = handler([Msg(request(1, user=1)), Msg(b"{oops"), Msg(request(3, user=2, movie=11))])
    preds = [Prediction.model_validate_json(o.value) for o in result.outputs if o.topic == names.TOPIC_PREDICTIONS]
    shadows = [
        ShadowPrediction.model_validate_json(o.value)
        for o in result.outputs
        if o.topic == names.TOPIC_PREDICTIONS_SHADOW
    ]
    assert [s.request_id for s in shadows] == [p.request_id for p in preds] == ["r1", "r3"]
    assert all((s.model_version, s.champion_version, s.score) == ("8", "7", 0.25) for s in shadows)
    assert np.array_equal(seen[0], np.array([p.features for p in preds]))  # the champion's very features
    assert result.shadowed == 2 and result.shadow_failures == 0
    assert result.sink is not None
    result.sink()
    assert {json.loads(v)["model_version"] for v in store.written.values()} == {"7"}  # pred:{id} is the champion's


def test_a_failing_or_absent_challenger_costs_the_champion_nothing(store: MemoryFeatures) -> None:
    def broken(x: np.ndarray) -> np.ndarray:
        raise ValueError("challenger bug")

    for shadow in (lambda: ServingModel("m", "8", broken), lambda: None):
        handler = ScorerHandler(store, like_rate_model, shadow=shadow)  # type: ignore[arg-type]
        result = handler([Msg(request(1)), Msg(request(2, user=2))])
        assert [o.topic for o in result.outputs] == [names.TOPIC_PREDICTIONS] * 2
        assert not result.refused
    assert result.shadowed == 0


def test_out_of_range_challenger_scores_are_dropped_not_sent(store: MemoryFeatures) -> None:
    challenger = ServingModel("m", "8", lambda x: np.array([np.nan, 1.5, 0.5])[: len(x)])
    handler = ScorerHandler(store, like_rate_model, shadow=lambda: challenger)  # type: ignore[arg-type]
    result = handler([Msg(request(1)), Msg(request(2, user=2)), Msg(request(3, user=3))])
    shadows = [o for o in result.outputs if o.topic == names.TOPIC_PREDICTIONS_SHADOW]
    assert len(shadows) == 1 and json.loads(shadows[0].value)["request_id"] == "r3"
