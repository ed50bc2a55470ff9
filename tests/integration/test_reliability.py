"""Reliability on the real broker and Redis of the local stack, with the platform's scorer in a process of its own:

- killed with SIGKILL in the middle of 50,000 events and restarted: every request has exactly one prediction in
  Redis and none is missing; 1,000 malformed events mixed in all reach the DLQ and never stop it;
- the broker stopped for 35 s and started again mid-stream: the same scorer process rides it out and no request is
  lost;
- Redis stopped for 20 s and started again mid-stream: the same scorer process retries with backoff and no request
  is lost.

Each test has its own topics, consumer group, Redis database 9 (flushed) and metrics port.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd
import pytest
import redis
from confluent_kafka import Producer
from streaming_fixtures import (
    count_results,
    drain,
    free_port,
    load_history_snapshot,
    movielens_split,
    scrape,
    start_program,
    start_scorer,
    stop_program,
    wait_for_members,
    wait_for_results,
)

from streamml import names
from streamml.config import Settings
from streamml.streaming.clients import ensure_topics, producer_config
from streamml.streaming.messages import DeadLetter, Prediction, RatingRequest

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

N_REQUESTS = 50_000
N_MALFORMED = 1_000
N_OUTAGE = 20_000  # requests of each outage test, before the outage; as many again are sent while it lasts
# Longer than a single wait of the worker (a 10 s flush, a 5 s backoff), so riding it out takes several retries.
DOWN_SECONDS = {"kafka": 35.0, "redis": 20.0}


@dataclass
class Stream:
    """A test's topics and Redis database, with the stream period of ml-latest-small as requests."""

    settings: Settings
    client: redis.Redis
    uid: str
    topics: list[str]  # requests, predictions, dlq
    rows: pd.DataFrame
    metrics_port: int

    @property
    def group(self) -> str:
        return f"test-reliability-{self.uid}"

    def start_scorer(self) -> subprocess.Popen[bytes]:
        db = self.client.connection_pool.connection_kwargs["db"]
        return start_scorer(self.topics, self.group, db, self.metrics_port)

    def produce(self, start: int, stop: int, malformed_every: int = 0, producer: Producer | None = None) -> list[str]:
        """Requests ``start``..``stop`` of the cycled stream (and a malformed event every ``malformed_every``);
        flushed unless a ``producer`` is given. Returns the request ids."""
        own = producer is None
        producer = producer or Producer(producer_config(self.settings.kafka))
        ids = []
        for i in range(start, stop):
            r = self.rows.iloc[i % len(self.rows)]
            request = RatingRequest(
                request_id=f"{self.uid}-{i}",
                user_id=int(r.userId),
                movie_id=int(r.movieId),
                event_ts=int(r.timestamp),
                sent_at=0.0,
            )
            ids.append(request.request_id)
            producer.produce(self.topics[0], key=str(request.user_id), value=request.encode())
            if malformed_every and i % malformed_every == 0:
                bad = json.dumps({"request_id": i, "user_id": "x"}).encode()
                producer.produce(self.topics[0], key=b"bad", value=bad)
            producer.poll(0)
        if own:
            assert producer.flush(60) == 0
        return ids

    def prediction_ids(self, expected: int) -> list[str]:
        values = drain(self.settings, self.topics[1], expected, self.uid, timeout=120)
        return [Prediction.model_validate_json(v).request_id for v in values]


@pytest.fixture
def stream(settings: Settings, redis_db: redis.Redis, require: Callable[[str], None], uid: str) -> Iterator[Stream]:
    require("kafka")
    history, rows, movies = movielens_split()
    load_history_snapshot(redis_db, history, movies)
    topics = [f"test.{uid}.{t}" for t in ("requests", "predictions", "dlq")]
    ensure_topics(settings.kafka, topics, partitions=3)
    yield Stream(settings, redis_db, uid, topics, rows.reset_index(drop=True), free_port())


def stop(scorer: subprocess.Popen[bytes]) -> None:
    if scorer.poll() is None:
        scorer.terminate()
        scorer.wait(30)


def test_kill_9_mid_stream_loses_nothing_and_poison_never_blocks(stream: Stream) -> None:
    ids = stream.produce(0, N_REQUESTS, malformed_every=N_REQUESTS // N_MALFORMED)
    scorer = stream.start_scorer()
    try:
        wait_for_results(stream.client, ids, len(ids) // 4, timeout=180, scorer=scorer)
        scorer.send_signal(signal.SIGKILL)
        scorer.wait(10)
    finally:
        stop(scorer)
    killed_at = count_results(stream.client, ids)
    assert killed_at is not None and 0 < killed_at < len(ids), "the kill must land mid-stream"

    scorer = stream.start_scorer()
    try:
        wait_for_results(stream.client, ids, len(ids), timeout=300, scorer=scorer)
        assert scorer.poll() is None, "the scorer must stay up"
        metrics = scrape(stream.metrics_port)
    finally:
        stop(scorer)
    # The restarted process's counters (from zero): what it consumed after the kill, the rest of the bad events.
    assert 0 < metrics["streamml_scorer_predictions_total"] <= len(ids)
    assert metrics["streamml_scorer_messages_consumed_total"] >= metrics["streamml_scorer_predictions_total"]
    assert metrics['streamml_scorer_dlq_records_total{reason="invalid_fields"}'] > 0
    assert metrics['streamml_scorer_model_info{model_name="test",model_version="1"}'] == 1
    assert metrics["streamml_scorer_batch_size_count"] > 0
    assert count_results(stream.client, ids) == len(ids)  # every request id has its result
    assert len(list(stream.client.scan_iter(match=f"pred:{stream.uid}-*", count=10_000))) == len(ids)  # none extra
    n_bad = len(range(0, N_REQUESTS, N_REQUESTS // N_MALFORMED))
    assert n_bad == N_MALFORMED
    dead = [DeadLetter.model_validate_json(v) for v in drain(stream.settings, stream.topics[2], n_bad, stream.uid)]
    assert len({(d.partition, d.offset) for d in dead}) == n_bad  # each at least once (redelivery may repeat)
    assert all(d.error_type == "PoisonMessageError" and d.error for d in dead)
    assert set(stream.prediction_ids(len(ids))) == set(ids)  # on the topic too (at least once: repeats allowed)


@pytest.mark.parametrize(
    "program", [pytest.param("kafka", marks=pytest.mark.kafka), pytest.param("redis", marks=pytest.mark.redis)]
)
def test_server_restart_mid_stream_loses_nothing(
    stream: Stream, settings: Settings, require: Callable[[str], None], program: str
) -> None:
    """Stop the broker (or Redis) while the scorer works through a backlog, send more requests while it is down,
    start it again: the same scorer process finishes every request, each with exactly one result in Redis."""
    ids = stream.produce(0, N_OUTAGE)
    scorer = stream.start_scorer()
    producer = Producer(producer_config(settings.kafka))
    try:
        started = wait_for_results(stream.client, ids, N_OUTAGE // 4, timeout=180, scorer=scorer)
        assert started >= N_OUTAGE // 4, "the scorer must be working when the server goes away"
        stop_program(settings, program)
        try:
            down_at = time.monotonic()
            # More requests while it is down (with the broker away they wait in the producer's queue).
            ids += stream.produce(N_OUTAGE, 2 * N_OUTAGE, producer=producer)
            time.sleep(max(0.0, DOWN_SECONDS[program] - (time.monotonic() - down_at)))
        finally:
            start_program(settings, program)
        assert producer.flush(120) == 0
        ids += stream.produce(2 * N_OUTAGE, 2 * N_OUTAGE + 2000)  # and traffic after the restart
        wait_for_results(stream.client, ids, len(ids), timeout=300, scorer=scorer)
        assert scorer.poll() is None, "the scorer must ride out the outage, not exit"
        metrics = scrape(stream.metrics_port)
    finally:
        stop(scorer)
    assert count_results(stream.client, ids) == len(ids)
    assert len(list(stream.client.scan_iter(match=f"pred:{stream.uid}-*", count=10_000))) == len(ids)
    assert set(stream.prediction_ids(len(ids))) == set(ids)
    assert metrics["streamml_scorer_predictions_total"] >= len(ids)
    if program == "redis":  # work was pending when Redis went away, so the scorer had to wait for it
        redis_retries = sum(metrics[f'streamml_scorer_retries_total{{operation="{op}"}}'] for op in ("handler", "sink"))
        assert redis_retries > 0


N_SCALE = 30_000
SCALE_RATE = 650.0  # requests/s, open loop: 46 s of traffic, well under what one scorer handles
PAUSE_WINDOW = 12.0  # seconds after a change in which its pause is looked for (more than the session timeout)


class Committed:
    """Samples the group's committed offsets while traffic flows and checks, each time, that every request below a
    committed offset already has its result in Redis: no offset is committed for an unscored request."""

    def __init__(self, stream: Stream, where: dict[tuple[int, int], str]) -> None:
        from confluent_kafka.admin import AdminClient

        from streamml.streaming.clients import admin_config

        self.stream, self.where = stream, where
        self.admin = AdminClient(admin_config(stream.settings.kafka))
        self.checked = dict.fromkeys(range(3), 0)  # offsets below these are known to be scored
        self.unscored: list[str] = []

    def sample(self) -> None:
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        request = ConsumerGroupTopicPartitions(
            self.stream.group, [TopicPartition(self.stream.topics[0], p) for p in range(3)]
        )
        result = self.admin.list_consumer_group_offsets([request])[self.stream.group].result(timeout=10)
        for tp in result.topic_partitions:
            ids = []
            offset = self.checked[tp.partition]
            while offset < tp.offset and (tp.partition, offset) in self.where:  # committed, and its id is known
                ids.append(self.where[tp.partition, offset])
                offset += 1
            found = self.stream.client.mget([names.prediction_key(i) for i in ids]) if ids else []
            self.unscored += [i for i, v in zip(ids, found, strict=True) if v is None]
            self.checked[tp.partition] = offset


def first_scored(settings: Settings, topic: str, ids: set[str], uid: str) -> dict[str, float]:
    """Each request's first ``scored_at`` on the predictions topic (redelivery may score a request twice)."""
    first: dict[str, float] = {}
    for value in drain(settings, topic, len(ids), uid, timeout=120):
        p = Prediction.model_validate_json(value)
        first[p.request_id] = min(p.scored_at, first.get(p.request_id, p.scored_at))
    return first


def longest_pause(times: list[float], start: float, window: float = PAUSE_WINDOW) -> float:
    """The longest time without a result in [start, start + window] (results arrive all the time under load)."""
    inside = [t for t in sorted(times) if start <= t <= start + window]
    edges = [start, *inside]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False)) if inside else window


def test_scale_1_to_3_to_1_with_a_kill_9_scores_every_request_exactly_once(
    stream: Stream, settings: Settings, record_property: Callable[[str, object], None]
) -> None:
    """30,000 requests at 650/s flow while the group goes from 1 scorer to 3, one of them is killed with SIGKILL
    (fenced by the broker after its session timeout), and the group shrinks to 1 again (SIGTERM: commit, leave).
    Every request has exactly one result, no offset is committed ahead of its result, nothing reaches the DLQ; the
    longest pause of each partition after each change is recorded (pytest's junit properties) and printed."""
    import threading

    where: dict[tuple[int, int], str] = {}
    ids: list[str] = []

    def delivered(err: object, msg: object) -> None:
        assert err is None
        where[msg.partition(), msg.offset()] = json.loads(msg.value())["request_id"]  # type: ignore[attr-defined]

    def send() -> None:
        producer = Producer(producer_config(settings.kafka))
        start = time.monotonic()
        for i in range(N_SCALE):
            time.sleep(max(0.0, start + i / SCALE_RATE - time.monotonic()))
            r = stream.rows.iloc[i % len(stream.rows)]
            request = RatingRequest(request_id=f"{stream.uid}-{i}", user_id=int(r.userId), movie_id=int(r.movieId),
                                    event_ts=int(r.timestamp), sent_at=time.time())  # fmt: skip
            ids.append(request.request_id)
            producer.produce(stream.topics[0], key=str(request.user_id), value=request.encode(), on_delivery=delivered)
            producer.poll(0)
        assert producer.flush(60) == 0

    committed = Committed(stream, where)
    scorers = [stream.start_scorer()]
    changes: dict[str, float] = {}
    sender = threading.Thread(target=send, daemon=True)
    try:
        wait_for_members(settings, stream.group, 1)
        sender.start()

        def run_for(seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                assert all(s.poll() is None for s in scorers), "a scorer exited"
                committed.sample()
                time.sleep(0.5)

        run_for(5)
        changes["1 -> 3 (two start)"] = time.time()
        scorers += [start_scorer(stream.topics, stream.group, stream.client.connection_pool.connection_kwargs["db"],
                                 port) for port in (free_port(), free_port())]  # fmt: skip
        wait_for_members(settings, stream.group, 3)
        run_for(5)
        changes["kill -9 one of 3"] = time.time()
        killed = scorers.pop(1)
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        wait_for_members(settings, stream.group, 2)  # after the broker's session timeout
        run_for(1)
        changes["2 -> 1 (SIGTERM)"] = time.time()
        leaving = scorers.pop()
        leaving.terminate()
        assert leaving.wait(30) == 0
        wait_for_members(settings, stream.group, 1)
        sender.join(120)
        assert not sender.is_alive()
        wait_for_results(stream.client, ids, len(ids), timeout=180, scorer=scorers[0])
        committed.sample()
    finally:
        for s in scorers:
            stop(s)
    assert committed.unscored == [], "offsets committed before their requests were scored"
    assert sum(committed.checked.values()) == len(ids), "the group committed every request"
    assert count_results(stream.client, ids) == len(ids)
    assert len(list(stream.client.scan_iter(match=f"pred:{stream.uid}-*", count=10_000))) == len(ids)
    assert drain(settings, stream.topics[2], 0, stream.uid, timeout=1) == []
    first = first_scored(settings, stream.topics[1], set(ids), stream.uid)
    assert set(first) == set(ids)
    partition_of = {request_id: partition for (partition, _), request_id in where.items()}
    by_partition: dict[int, list[float]] = {}
    for request_id, t in first.items():
        by_partition.setdefault(partition_of[request_id], []).append(t)
    last = max(first.values())
    for change, at in changes.items():
        pauses: object = {p: round(longest_pause(times, at), 2) for p, times in sorted(by_partition.items())}
        if at + PAUSE_WINDOW > last:
            pauses = f"not measured: the traffic ended {last - at:.1f} s after the change"
        record_property(f"pause {change}", pauses)
        print(f"longest pause per partition (s) after {change}: {pauses}")  # noqa: T201
