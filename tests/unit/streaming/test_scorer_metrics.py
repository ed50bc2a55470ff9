"""The scorer's Prometheus metrics, recorded by the worker and the model hooks into a registry of the test's own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streamml.errors import TransientError
from streamml.streaming.messages import POISON_REASONS, RatingRequest, parse
from streamml.streaming.scorer import ServingModel
from streamml.streaming.serving import ChampionModel
from streamml.streaming.telemetry import ScorerMetrics
from streamml.streaming.worker import BatchResult, Output, Worker


@dataclass
class Msg:
    payload: bytes | None
    offset_: int = 0

    def value(self) -> bytes | None:
        return self.payload

    def key(self) -> bytes:
        return b"k"

    def topic(self) -> str:
        return "requests"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.offset_

    def error(self) -> None:
        return None


@dataclass
class Producer:
    pending: list[int] = field(default_factory=list)  # what successive flushes report as undelivered

    def produce(self, topic: str, key: Any, value: bytes, on_delivery: Any) -> None:
        pass

    def poll(self, _: float) -> int:
        return 0

    def flush(self, _: float) -> int:
        return self.pending.pop(0) if self.pending else 0


@dataclass
class Consumer:
    commits: int = 0

    def commit(self, asynchronous: bool, offsets: list[Any]) -> None:
        self.commits += 1


@dataclass
class Features:
    """The RedisFeatureStore surface the scorer uses: version 1 with no blobs (every request is a cold start)."""

    fail_writes: int = 0
    written: dict[str, bytes] = field(default_factory=dict)

    def current_version(self) -> int:
        return 1

    def get_many(self, version: int, user_ids: list[int], movie_ids: list[int]) -> list[bytes | None]:
        return [None] * (len(user_ids) + len(movie_ids) + 1)

    def write_predictions(self, items: list[tuple[str, bytes]], ttl_seconds: int) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise TransientError("redis down")
        self.written.update(items)


@pytest.fixture
def store() -> Features:
    return Features()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    sample = registry.get_sample_value(name, labels)
    assert sample is not None, f"{name}{labels} is not exported"
    return sample


def request(i: int) -> bytes:
    return RatingRequest(request_id=f"r{i}", user_id=1, movie_id=2, event_ts=3, sent_at=4.0).encode()


def test_a_delivered_batch_moves_the_counters(store: Features, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamml.streaming.scorer import ScorerHandler

    monkeypatch.setattr("time.sleep", lambda _: None)
    registry = CollectorRegistry()
    metrics = ScorerMetrics(registry)
    assert value(registry, "streamml_scorer_predictions_total") == 0
    assert value(registry, "streamml_scorer_dlq_records_total", reason="invalid_json") == 0  # exported from start

    model = ServingModel("m", "7", lambda x: x[:, 0] * 0 + 0.9)
    store.fail_writes = 2  # Redis refuses the first two writes: two retries of the sink
    handler = ScorerHandler(store, lambda: model)
    consumer = Consumer()
    worker = Worker(consumer, Producer(pending=[3]), ["requests"], handler, observer=metrics)  # one slow flush
    worker.process([Msg(request(1), 0), Msg(request(2), 1), Msg(b"{oops", 2), Msg(None, 3), Msg(b"[]", 4)])

    assert consumer.commits == 1
    assert value(registry, "streamml_scorer_messages_consumed_total") == 5
    assert value(registry, "streamml_scorer_predictions_total") == 2
    assert value(registry, "streamml_scorer_cold_starts_total") == 2  # no history in this store
    assert value(registry, "streamml_scorer_dlq_records_total", reason="invalid_json") == 1
    assert value(registry, "streamml_scorer_dlq_records_total", reason="empty") == 1
    assert value(registry, "streamml_scorer_dlq_records_total", reason="invalid_fields") == 1
    assert value(registry, "streamml_scorer_retries_total", operation="sink") == 2
    assert value(registry, "streamml_scorer_retries_total", operation="delivery") == 1
    assert value(registry, "streamml_scorer_retries_total", operation="commit") == 0
    assert value(registry, "streamml_scorer_batch_size_count") == 1
    assert value(registry, "streamml_scorer_batch_size_sum") == 5
    assert value(registry, "streamml_scorer_batch_seconds_count") == 1
    assert b"streamml_scorer_batch_seconds_bucket" in generate_latest(registry)


def test_a_batch_that_is_not_delivered_is_not_counted(store: Features) -> None:
    from streamml.streaming.scorer import ScorerHandler

    registry = CollectorRegistry()
    metrics = ScorerMetrics(registry)
    handler = ScorerHandler(store, lambda: ServingModel("m", "7", lambda x: x[:, 0]))
    worker = Worker(Consumer(), Producer(pending=[1] * 3), ["t"], handler, observer=metrics, retry_attempts=3)
    with pytest.raises(TransientError):
        worker.process([Msg(request(1))])
    assert value(registry, "streamml_scorer_predictions_total") == 0
    assert value(registry, "streamml_scorer_messages_consumed_total") == 0
    assert value(registry, "streamml_scorer_retries_total", operation="delivery") == 2


def test_other_handlers_count_messages_and_batches_only() -> None:
    registry = CollectorRegistry()
    metrics = ScorerMetrics(registry)
    worker = Worker(Consumer(), Producer(), ["t"], lambda ms: BatchResult([Output("o", None, b"v")]), observer=metrics)
    worker.process([Msg(b"a"), Msg(b"b")])
    assert value(registry, "streamml_scorer_messages_consumed_total") == 2
    assert value(registry, "streamml_scorer_predictions_total") == 0


def test_model_loads_and_the_version_serving() -> None:
    registry = CollectorRegistry()
    metrics = ScorerMetrics(registry)
    versions = iter(["3", "4", "5"])

    def loader(uri: str) -> Any:
        if uri.endswith("/5"):
            raise TransientError("artifact store down")
        return lambda x: x

    champion = ChampionModel(
        "http://unused", loader=loader, on_loaded=metrics.model_loaded, on_failed=metrics.model_failed
    )
    champion._champion_version = lambda: next(versions)  # type: ignore[method-assign]
    assert champion.refresh() and champion().version == "3"
    assert value(registry, "streamml_scorer_model_version") == 3
    assert value(registry, "streamml_scorer_model_info", model_name="movielens-like", model_version="3") == 1
    assert champion.refresh()
    assert not champion.refresh()  # version 5 does not load: 4 keeps serving, the error is reported
    assert champion._model is not None and champion._model.version == "4"
    assert champion.last_error is not None and "artifact store down" in champion.last_error
    assert value(registry, "streamml_scorer_model_version") == 4
    assert value(registry, "streamml_scorer_model_loads_total", outcome="success") == 2
    assert value(registry, "streamml_scorer_model_loads_total", outcome="failure") == 1
    old = {"model_name": "movielens-like", "model_version": "3"}
    assert registry.get_sample_value("streamml_scorer_model_info", old) is None


def test_a_model_event_reloads_in_the_background_without_blocking_the_batch() -> None:
    import threading

    release = threading.Event()
    loaded: list[str] = []
    versions = iter(["1", "2"])

    def loader(uri: str) -> Any:
        if uri.endswith("/2"):
            release.wait(10)  # a slow load: the batch must not wait for it
        return lambda x: x

    @dataclass
    class Events:
        pending: int = 0

        def poll(self, _: float) -> Any:
            if not self.pending:
                return None
            self.pending -= 1
            return Msg(b"{}")

    events = Events()
    done = threading.Event()
    champion = ChampionModel(
        "http://unused",
        loader=loader,
        events=events,
        background=True,
        on_loaded=lambda m: (loaded.append(m.version), done.set() if m.version == "2" else None),
    )
    champion._champion_version = lambda: next(versions)  # type: ignore[method-assign]
    assert champion().version == "1"
    events.pending = 1
    assert champion().version == "1"  # the event woke the reload thread; this batch keeps the old model
    release.set()
    assert done.wait(10)
    assert champion().version == "2"
    assert loaded == ["1", "2"]


@pytest.mark.parametrize(
    "payload, reason",
    [
        (None, "empty"),
        (b"x" * 20_000, "too_large"),
        (b"{oops", "invalid_json"),
        (b'{"request_id": 1}', "invalid_fields"),
        (
            b'{"request_id":"x","user_id":1,"movie_id":1,"event_ts":9223372036854775808,"sent_at":1}',
            "out_of_range",
        ),
    ],
)
def test_every_refusal_has_one_of_the_fixed_reasons(payload: bytes | None, reason: str) -> None:
    from streamml.errors import PoisonMessageError

    with pytest.raises(PoisonMessageError) as refused:
        parse(RatingRequest, payload)
    assert refused.value.reason == reason
    assert reason in POISON_REASONS
