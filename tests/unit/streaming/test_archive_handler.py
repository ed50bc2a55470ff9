"""The feedback archive with an in-memory bucket, predictions store and Kafka log: the join, the send-hour partitions,
unreadable feedback, and exactly once across crashes at every point of a batch (the sink half done, between the
objects and the commit, between the commit and the markers' deletion, a commit the group skipped), restarted with
other batch sizes."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch

import pyarrow.parquet as pq
import pytest
from confluent_kafka import KafkaError, KafkaException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streaming_fakes import Msg

from streamml import names
from streamml.config import Settings
from streamml.errors import TransientError
from streamml.features.spec import FEATURE_NAMES, N_FEATURES
from streamml.streaming.archive import SCHEMA, ArchiveHandler, read_archive
from streamml.streaming.messages import Feedback, Prediction
from streamml.streaming.worker import BatchResult, Worker

TOPIC = names.TOPIC_FEEDBACK
HOUR0 = 1_500_000_000 - 1_500_000_000 % 3600  # 2017-07-14 02:00 UTC: when the records are sent
EVENT0 = 1_000_000_000  # 2001-09-09: when the ratings happened (a replay sends years of them in minutes)


class Crash(Exception):  # noqa: N818 - the process dies here
    """The process is killed at this point (not an error the worker handles)."""


class Bucket:
    """The object operations of :class:`~streamml.stores.objects.ObjectStore` on a dict, with faults to order:
    ``crash_on_put`` kills the process at that put (counting from now); ``transient_puts`` fail as MinIO down."""

    bucket = names.BUCKET_FEATURES

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.crash_on_put: int | None = None
        self.transient_puts = 0
        self.gets: list[str] = []

    def keys(self, prefix: str) -> Iterator[str]:
        yield from sorted(k for k in self.objects if k.startswith(prefix))

    def get_bytes(self, key: str) -> bytes | None:
        self.gets.append(key)
        return self.objects.get(key)

    def put_bytes(self, key: str, body: bytes) -> None:
        if self.transient_puts:
            self.transient_puts -= 1
            raise TransientError("MinIO is unreachable")
        if self.crash_on_put is not None:
            self.crash_on_put -= 1
            if self.crash_on_put == 0:
                self.crash_on_put = None
                raise Crash("killed while writing objects")
        self.objects[key] = body

    def delete_keys(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.objects.pop(key, None)

    def archived(self) -> list[dict[str, Any]]:
        """Every row of every object in the bucket, markers or not (what a crash left is there too)."""
        rows: list[dict[str, Any]] = []
        for key, body in self.objects.items():
            if key.endswith(".parquet"):
                rows += pq.ParquetFile(io.BytesIO(body)).read().to_pylist()
        return rows


@dataclass
class Predictions:
    stored: dict[str, bytes] = field(default_factory=dict)

    def read_predictions(self, request_ids: Sequence[str]) -> list[bytes | None]:
        return [self.stored.get(r) for r in request_ids]


@dataclass
class Log:
    """A topic's partitions and the group's committed offsets; a consumer reads from its position, which starts at
    the committed offset after every (re)start. Each commit takes the next of ``faults`` (none when empty):
    ``"before"`` kills the process before the offsets are stored, ``"after"`` right after (before the worker's
    commit callback), ``"stale"`` makes the group refuse it (a rebalance), None lets it pass. ``sent`` holds the
    records' Kafka timestamps (unix seconds) per partition; a partition not in it has records without one."""

    partitions: dict[int, list[bytes | None]]
    sent: dict[int, list[int]] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    faults: list[str | None] = field(default_factory=list)
    commits: int = 0

    def commit(self, asynchronous: bool, offsets: list[Any]) -> None:  # noqa: ARG002 - confluent-kafka's signature
        fault = self.faults.pop(0) if self.faults else None
        if fault == "before":
            raise Crash("killed before the commit")
        if fault == "stale":
            raise KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION))
        for tp in offsets:
            self.committed[tp.partition] = tp.offset
        self.commits += 1
        if fault == "after":
            raise Crash("killed after the commit")

    def batches(self, size: int) -> Iterator[list[Msg]]:
        """The rest of the log from the committed offsets, round robin over partitions, ``size`` at a time."""
        position = {p: self.committed.get(p, 0) for p in self.partitions}
        while True:
            batch: list[Msg] = []
            while len(batch) < size and any(position[p] < len(v) for p, v in self.partitions.items()):
                for p, values in self.partitions.items():
                    if position[p] < len(values) and len(batch) < size:
                        at = self.sent[p][position[p]] * 1000 if p in self.sent else None
                        batch.append(Msg(values[position[p]], p, position[p], TOPIC, timestamp_ms=at))
                        position[p] += 1
            if not batch:
                return
            yield batch

    def done(self) -> bool:
        return all(self.committed.get(p, 0) == len(v) for p, v in self.partitions.items())


class NoProducer:
    def produce(self, *_: object, **__: object) -> None:
        raise AssertionError("the archive produces nothing")

    def poll(self, _: float) -> int:
        return 0

    def flush(self, _: float) -> int:
        return 0


def feedback(i: int, ts: int | None = None) -> Feedback:
    return Feedback(
        request_id=f"req-{i}", user_id=100 + i % 7, movie_id=200 + i, rating=(i % 10 + 1) / 2, event_ts=ts or HOUR0 + i
    )


def prediction(f: Feedback, score: float = 0.75) -> Prediction:
    return Prediction(
        request_id=f.request_id, user_id=f.user_id, movie_id=f.movie_id, score=score, label=int(score >= 0.5),
        model_name="movielens-like", model_version="4", feature_version=2, cold_start=False, event_ts=f.event_ts,
        sent_at=10.0, scored_at=10.5, features=tuple(float(j) + f.movie_id for j in range(N_FEATURES)),
        globals_used=(10, 35.0, 6),
    )  # fmt: skip


def run(log: Log, bucket: Bucket, predictions: Predictions, size: int) -> None:
    """One process: a fresh handler and worker consuming the log from its committed offsets until it ends or the
    process is killed (a :class:`Crash`)."""
    worker = Worker(log, NoProducer(), [TOPIC], ArchiveHandler(predictions, bucket))  # type: ignore[arg-type]
    try:
        for batch in log.batches(size):
            worker.process(batch)
    except Crash:
        pass


def stream(n: int, partitions: int = 3, spacing: int = 97) -> tuple[Log, Predictions, list[Feedback]]:
    """``n`` feedback records over ``partitions`` partitions, sent ``spacing`` seconds apart from ``HOUR0``, of ratings
    a week apart from ``EVENT0``; every third one unserved."""
    records = [feedback(i, EVENT0 + i * 7 * 86_400) for i in range(n)]
    sent = [HOUR0 + i * spacing for i in range(n)]
    log = Log(
        {p: [f.encode() for f in records[p::partitions]] for p in range(partitions)},
        sent={p: sent[p::partitions] for p in range(partitions)},
    )
    return log, Predictions({f.request_id: prediction(f).encode() for f in records if int(f.movie_id) % 3}), records


def test_each_record_is_joined_with_what_was_served_for_its_request() -> None:
    served, other_user, corrupt, absent = (feedback(i) for i in range(4))
    predictions = Predictions(
        {
            served.request_id: prediction(served, 0.8).encode(),
            # The same request id scored for another user: not this rating's features.
            other_user.request_id: prediction(other_user.model_copy(update={"user_id": 999})).encode(),
            corrupt.request_id: b"{not a prediction",
        }
    )
    bucket = Bucket()
    log = Log({0: [f.encode() for f in (served, other_user, corrupt, absent)]})
    run(log, bucket, predictions, size=10)
    rows = {r["rating_id"]: r for r in read_archive(Settings(), store=bucket).to_dict("records")}  # type: ignore[arg-type]

    row = rows[served.rating_id]
    assert (row["request_id"], row["user_id"], row["movie_id"], row["rating"]) == (
        served.request_id, served.user_id, served.movie_id, served.rating,
    )  # fmt: skip
    assert row["served"] and row["score"] == 0.8 and row["label"] == int(served.rating >= 4.0)
    assert (row["model_name"], row["model_version"], row["feature_version"]) == ("movielens-like", "4", 2)
    assert row["scored_at"] == 10.5 and row["event_ts"] == served.event_ts
    assert [row[name] for name in FEATURE_NAMES] == list(prediction(served).features)
    for f in (other_user, corrupt, absent):
        row = rows[f.rating_id]
        assert not row["served"] and row["label"] in (0, 1)
        assert all(row[c] is None or row[c] != row[c] for c in ("score", "model_version", *FEATURE_NAMES))
    table = pq.read_table(io.BytesIO(next(b for k, b in bucket.objects.items() if k.endswith(".parquet"))))
    assert table.schema == SCHEMA
    assert table.column("score").null_count == 3 and table.column(FEATURE_NAMES[0]).null_count == 3


def test_objects_are_partitioned_by_the_hour_the_feedback_was_sent_and_named_by_partition_and_first_offset() -> None:
    # Sent: partition 0 at 02:10, 03:05, 02:50 (a producer's clock is not monotone), 04:00; partition 1 at 03:59. The
    # ratings happened years apart, in other hours each: they do not split the objects.
    sent = {0: [HOUR0 + 600, HOUR0 + 3900, HOUR0 + 3000, HOUR0 + 7200], 1: [HOUR0 + 7199]}
    values = {
        p: [feedback(p * 10 + k, EVENT0 + (p * 10 + k) * 86_400).encode() for k in range(len(ts))]
        for p, ts in sent.items()
    }
    # Partition 2's record has no timestamp (a producer that sets none): its event hour stands in.
    log = Log(values | {2: [feedback(20, HOUR0 + 60).encode()]}, sent=sent)
    bucket = Bucket()
    run(log, bucket, Predictions(), size=100)
    assert sorted(k for k in bucket.objects if k.endswith(".parquet")) == [
        "online/date=2017-07-14/hour=02/p0-o00000000000000000000.parquet",
        "online/date=2017-07-14/hour=02/p2-o00000000000000000000.parquet",
        "online/date=2017-07-14/hour=03/p0-o00000000000000000001.parquet",
        "online/date=2017-07-14/hour=03/p1-o00000000000000000000.parquet",
        "online/date=2017-07-14/hour=04/p0-o00000000000000000003.parquet",
    ]
    hour2 = pq.read_table(io.BytesIO(bucket.objects["online/date=2017-07-14/hour=02/p0-o00000000000000000000.parquet"]))
    assert hour2.column("kafka_offset").to_pylist() == [0, 2]
    assert hour2.column("kafka_timestamp").to_pylist() == [(HOUR0 + 600) * 1000, (HOUR0 + 3000) * 1000]
    assert hour2.column("event_ts").to_pylist() == [EVENT0, EVENT0 + 2 * 86_400]
    assert log.done() and not [k for k in bucket.objects if names.ARCHIVE_PENDING in k]  # committed: no marker


def test_unreadable_feedback_is_skipped_and_counted_never_blocking_the_partition() -> None:
    good = [feedback(i) for i in range(3)]
    bad: list[bytes | None] = [b"{oops", None, b'{"request_id": "x"}', b"x" * 20_000]
    log = Log({0: [bad[0], good[0].encode(), bad[1], good[1].encode(), bad[2], bad[3], good[2].encode()]})
    bucket = Bucket()
    handler = ArchiveHandler(Predictions(), bucket)  # type: ignore[arg-type]
    result = handler([Msg(v, offset_=k, topic_=TOPIC) for k, v in enumerate(log.partitions[0])])
    assert result.outputs == [] and handler.skipped == len(bad)  # counted, not dead-lettered
    run(log, bucket, Predictions(), size=3)
    assert log.done()  # committed past them
    assert sorted(r["rating_id"] for r in bucket.archived()) == sorted(f.rating_id for f in good)


def test_a_crash_between_the_objects_and_the_commit_then_other_batch_sizes_archive_each_record_once() -> None:
    log, predictions, records = stream(150, spacing=150)
    bucket = Bucket()
    worker_batches = iter(log.batches(25))
    worker = Worker(log, NoProducer(), [TOPIC], ArchiveHandler(predictions, bucket))  # type: ignore[arg-type]
    for _ in range(3):
        worker.process(next(worker_batches))
    log.faults = ["before"]  # the 4th batch's objects are written, its offsets never committed
    with pytest.raises(Crash):
        worker.process(next(worker_batches))
    assert len(bucket.archived()) == 100 and len(log.committed) == 3 and sum(log.committed.values()) == 75
    assert [k for k in bucket.objects if names.ARCHIVE_PENDING in k]  # the intent markers say what is uncommitted

    run(log, bucket, predictions, size=19)  # restarted: the same records again, in other batches
    assert log.done()
    ids = [r["rating_id"] for r in bucket.archived()]
    assert sorted(ids) == sorted(f.rating_id for f in records)  # every record, each once
    assert not [k for k in bucket.objects if names.ARCHIVE_PENDING in k]
    assert sum(r["served"] for r in bucket.archived()) == len(predictions.stored)


def test_a_crash_after_the_commit_keeps_the_committed_objects_its_marker_still_lists() -> None:
    """Deleting every object a leftover marker lists would lose these records: they are never consumed again."""
    log, predictions, records = stream(60)
    bucket = Bucket()
    log.faults = ["after"]
    run(log, bucket, predictions, size=20)
    assert log.commits == 1 and [k for k in bucket.objects if names.ARCHIVE_PENDING in k]
    run(log, bucket, predictions, size=9)
    assert log.done()
    assert sorted(r["rating_id"] for r in bucket.archived()) == sorted(f.rating_id for f in records)


def test_commits_the_group_skipped_are_redone_with_the_batches_after_them() -> None:
    """Keys derive from the first offset, so a batch consumed again from the same offset overwrites its own objects;
    the markers are what remove the objects of later uncommitted batches, which only skipped commits leave."""
    log, predictions, records = stream(80, spacing=10)  # one hour: every batch has an object of it per partition
    bucket = Bucket()
    log.faults = [None, "stale", "stale", "before"]  # a rebalance skips two commits, then the process dies
    run(log, bucket, predictions, size=15)
    assert log.commits == 1 and sum(log.committed.values()) == 15  # three batches are consumed again
    assert len(bucket.archived()) == 60
    run(log, bucket, predictions, size=26)
    assert log.done()
    assert sorted(r["rating_id"] for r in bucket.archived()) == sorted(f.rating_id for f in records)


# One process run: its batch size, how many batches before a clean stop (SIGTERM), the faults of its commits in
# turn, the put that kills it (None: none) and how many puts fail as MinIO down (two exhaust the retries: it exits).
process_runs = st.tuples(
    st.integers(1, 30),
    st.integers(1, 5),
    st.lists(st.sampled_from([None, "stale", "stale", "before", "after"]), max_size=5),
    st.none() | st.integers(1, 6),
    st.integers(0, 2),
)


@settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 50),
    partitions=st.integers(1, 4),
    spacing=st.sampled_from([5, 40, 600]),
    runs=st.lists(process_runs, max_size=8),
)
def test_no_crash_skipped_commit_or_batch_size_loses_or_doubles_a_record(
    n: int, partitions: int, spacing: int, runs: list[tuple[int, int, list[str | None], int | None, int]]
) -> None:
    log, predictions, records = stream(n, partitions, spacing)
    bucket = Bucket()
    with patch("time.sleep"):  # the worker's backoff
        for size, stop_after, faults, crash_on_put, transient_puts in runs:
            log.faults, bucket.crash_on_put, bucket.transient_puts = list(faults), crash_on_put, transient_puts
            handler = ArchiveHandler(predictions, bucket)  # type: ignore[arg-type]
            worker = Worker(log, NoProducer(), [TOPIC], handler, retry_attempts=2)
            try:
                for _, batch in zip(range(stop_after), log.batches(size), strict=False):
                    worker.process(batch)
            except (Crash, TransientError):  # killed, or out of retries: the process exits
                pass
            log.faults, bucket.crash_on_put, bucket.transient_puts = [], None, 0
    run(log, bucket, predictions, size=1000)  # a last, healthy run to the end
    assert log.done()
    expected = sorted(f.rating_id for f in records)
    assert sorted(r["rating_id"] for r in bucket.archived()) == expected
    assert sorted(read_archive(Settings(), store=bucket)["rating_id"]) == expected  # type: ignore[arg-type]


def test_minio_down_is_retried_by_the_worker_and_commits_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda _: None)
    log, predictions, records = stream(30)
    bucket = Bucket()
    bucket.transient_puts = 3
    run(log, bucket, predictions, size=100)
    assert log.done() and log.commits == 1
    assert sorted(r["rating_id"] for r in bucket.archived()) == sorted(f.rating_id for f in records)


def test_the_reader_reads_only_the_hours_asked_for_and_each_record_once() -> None:
    log, predictions, records = stream(60, partitions=2, spacing=300)  # 5 hours
    bucket = Bucket()
    run(log, bucket, predictions, size=1000)
    since = datetime.fromtimestamp(HOUR0 + 3600 + 1800, UTC)
    until = datetime.fromtimestamp(HOUR0 + 3 * 3600, UTC).replace(tzinfo=None)  # naive means UTC
    bucket.gets.clear()
    frame = read_archive(Settings(), since, until, store=bucket)  # type: ignore[arg-type]
    sent = {f.rating_id: HOUR0 + i * 300 for i, f in enumerate(records)}
    wanted = [f for f in records if since.timestamp() <= sent[f.rating_id] < HOUR0 + 3 * 3600]
    assert list(frame["rating_id"]) == [f.rating_id for f in sorted(wanted, key=lambda f: f.event_ts)]
    assert list(frame.columns) == SCHEMA.names
    assert all("hour=03" in k or "hour=04" in k for k in bucket.gets if k.endswith(".parquet"))

    # A record whose commit did not happen is read once before the restart writes it again, and once after.
    more = Log({3: [feedback(1000).encode()]}, sent={3: [HOUR0]}, faults=["before"])
    run(more, bucket, predictions, size=10)
    assert len(read_archive(Settings(), store=bucket)) == len(records) + 1  # type: ignore[arg-type]
    run(more, bucket, predictions, size=10)
    assert more.done() and len(read_archive(Settings(), store=bucket)) == len(records) + 1  # type: ignore[arg-type]
    # A read that races a recovery (the old object listed, the new one written meanwhile) keeps one copy.
    key = next(k for k in bucket.objects if "/p3-" in k)
    bucket.objects[key.replace(".parquet", "-copy.parquet")] = bucket.objects[key]
    assert len(read_archive(Settings(), store=bucket)) == len(records) + 1  # type: ignore[arg-type]
    assert read_archive(Settings(), until=datetime.fromtimestamp(HOUR0, UTC), store=bucket).empty  # type: ignore[arg-type]


def test_the_worker_runs_the_commit_callback_only_after_a_commit() -> None:
    calls: list[int] = []

    def handler(messages: Sequence[Any]) -> BatchResult:
        if any(m.value() == b"bug" for m in messages):
            raise ValueError("a bug this message triggers")
        return BatchResult(committed=lambda: calls.append(len(messages)))

    log = Log({0: [b"a", b"b", b"bug", b"c"]})
    worker = Worker(log, _Sink(), [TOPIC], handler)
    worker.process(next(log.batches(10)))  # isolates the culprit; both halves' callbacks run after the commit
    assert log.commits == 1 and sorted(calls) == [1, 2]
    log.faults = ["stale"]
    worker.process([Msg(b"d", offset_=4, topic_=TOPIC)])
    assert sorted(calls) == [1, 2]  # skipped commit: no callback


class _Sink(NoProducer):
    def produce(self, *_: object, **__: object) -> None:
        pass  # the culprit's dead letter
