"""The scorer's Prometheus metrics, recorded by the worker and the model hooks into a registry of the test's own."""

from __future__ import annotations

import time
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
    versions = iter(["3", "4", "5", "5"])

    def loader(uri: str) -> Any:
        if uri.endswith("/5"):
            raise TransientError("artifact store down")
        return lambda x: x

    champion = ChampionModel(
        "http://unused", loader=loader, on_loaded=metrics.model_loaded, on_failed=metrics.model_failed
    )
    champion._aliases = lambda: {"champion": next(versions)}  # type: ignore[method-assign]
    assert champion.refresh() and champion().version == "3"
    assert value(registry, "streamml_scorer_model_version") == 3
    assert value(registry, "streamml_scorer_model_info", model_name="movielens-like", model_version="3") == 1
    assert champion.refresh()
    assert not champion.refresh()  # version 5 does not load: 4 keeps serving, the error is reported
    assert not champion.refresh()  # ... and it is not tried again at once
    assert champion._model is not None and champion._model.version == "4"
    assert champion.last_error is not None and "artifact store down" in champion.last_error
    assert value(registry, "streamml_scorer_model_version") == 4
    assert value(registry, "streamml_scorer_model_loads_total", outcome="success") == 2
    assert value(registry, "streamml_scorer_model_loads_total", outcome="failure") == 1
    old = {"model_name": "movielens-like", "model_version": "3"}
    assert registry.get_sample_value("streamml_scorer_model_info", old) is None


def watched(aliases: dict[str, str], loader: Any, **kwargs: Any) -> ChampionModel:
    champion = ChampionModel("http://unused", poll_seconds=0.02, loader=loader, watch=True, **kwargs)
    champion._aliases = lambda: dict(aliases)  # type: ignore[method-assign]
    return champion


def test_the_watcher_follows_an_alias_moved_by_anyone_without_an_event_or_a_batch() -> None:
    import threading

    aliases = {"champion": "1"}
    loaded = threading.Event()
    champion = watched(aliases, lambda uri: lambda x: x, on_loaded=lambda m: m.version == "2" and loaded.set())
    try:
        assert champion().version == "1"
        aliases["champion"] = "2"  # as the MLflow UI or client would: no model event
        assert loaded.wait(10)
        assert champion().version == "2"
    finally:
        champion.close()


def test_a_slow_load_keeps_the_old_model_briefly_then_batches_wait_for_the_new_one() -> None:
    import threading

    aliases = {"champion": "1"}
    release, loading = threading.Event(), threading.Event()

    def loader(uri: str) -> Any:
        if uri.endswith("/2"):
            loading.set()
            release.wait(10)
        return lambda x: x

    champion = watched(aliases, loader, stale_seconds=0.3)
    try:
        assert champion().version == "1"
        aliases["champion"] = "2"
        assert loading.wait(10)
        assert champion().version == "1"  # just seen: the batch is not held up
        served: list[str] = []
        late = threading.Thread(target=lambda: (time.sleep(0.5), served.append(champion().version)))
        late.start()
        time.sleep(1.0)
        assert served == []  # past stale_seconds: the batch waits for the load ...
        release.set()
        late.join(10)
        assert served == ["2"]  # ... and is scored by the new champion
    finally:
        release.set()
        champion.close()


def test_an_event_wakes_the_watcher_at_once() -> None:
    import threading

    @dataclass
    class Events:
        pending: int = 0
        polls: list[float] = field(default_factory=list)

        def poll(self, timeout: float) -> Any:
            self.polls.append(timeout)
            if not self.pending:
                time.sleep(min(timeout, 0.05))
                return None
            self.pending -= 1
            return Msg(b"{}")

    aliases = {"champion": "1"}
    loaded = threading.Event()
    events = Events()
    champion = ChampionModel(
        "http://unused", poll_seconds=3600, events=events, loader=lambda uri: lambda x: x, watch=True,
        on_loaded=lambda m: m.version == "2" and loaded.set(),
    )  # fmt: skip
    champion._aliases = lambda: dict(aliases)  # type: ignore[method-assign]
    try:
        assert champion().version == "1"
        aliases["champion"] = "2"
        events.pending = 1
        assert loaded.wait(10)
        assert champion().version == "2"
        assert all(t == 3600 for t in events.polls)  # only the watcher polls the consumer
    finally:
        champion.close()


def test_shadow_follows_the_challenger_only_while_it_differs_and_loads() -> None:
    def loader(uri: str) -> Any:
        if uri.endswith("/9"):
            raise ValueError("cannot unpickle")
        return lambda x: x

    aliases = {"champion": "1", "challenger": "2"}
    champion = ChampionModel("http://unused", loader=loader, shadow=True)
    champion._aliases = lambda: dict(aliases)  # type: ignore[method-assign]
    champion.refresh()
    challenger = champion.challenger()
    assert challenger is not None and challenger.version == "2"
    aliases["champion"] = "2"
    champion.refresh()
    assert champion().version == "2" and champion.challenger() is None  # promoted: nothing left to shadow
    aliases["challenger"] = "9"
    champion.refresh()
    assert champion.challenger() is None and champion().version == "2"  # a broken challenger is not shadowed
    del aliases["challenger"]
    champion.refresh()
    assert champion.challenger() is None
    assert ChampionModel("http://unused", loader=loader).challenger() is None


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
