"""The feedback archive: every record of ``ratings.feedback.v1`` joined with what was served for its request (the
scorer's ``pred:{request_id}`` in Redis: the feature vector, the feature and model versions, the champion's score),
written exactly once as parquet under ``s3://features/online/``. It is the training data of the next model.

Layout. ``online/date=YYYY-MM-DD/hour=HH/p{partition}-o{first_offset:020d}.parquet``: the records of one consumed
batch from one Kafka partition that were sent (their Kafka record timestamp) in that UTC hour, named by the lowest
offset among them (:func:`names.archive_object_key`). The hour is the send time, not the rating's event time: it is
fixed per record (a batch consumed again writes the same keys), it keeps a batch in one or two objects per partition
whatever the event times (a replay sends years of MovieLens event time in minutes, and event-time hours made one tiny
object per rating), and "what arrived since" is what a retrain asks. Columns (:data:`SCHEMA`): rating_id, request_id,
user_id, movie_id, rating, event_ts, label (rating >= 4.0, int32 as in the batch parts), served (a prediction was
found), score, model_name, model_version, feature_version, scored_at, kafka_partition, kafka_offset and
kafka_timestamp (where the record came from; the timestamp in unix milliseconds, the event time's when the record
has none), then one
float64 column per feature in ``spec.FEATURE_NAMES`` order, named as in the batch parts; everything the prediction
gives is null when ``served`` is false. A prediction counts as served when ``pred:{request_id}`` exists, parses and
names the feedback's user and movie: it is absent when it expired (24 h TTL), was never scored, or was not written
yet when the feedback was archived (a scorer lagging behind the feedback).

Batching. One write per consumed batch: the worker consumes up to ``archive.flush_records`` messages, waiting at
most ``archive.flush_seconds`` (:class:`~streamml.config.ArchiveSettings`), and the handler's sink writes them all.
No record is held from one batch to the next, so the offsets the worker commits after the sink (one past each
partition's last message) are exactly those of records whose objects are complete; the worker's commit rule stays
what it is for every handler. A single ``consume`` call per batch also means that a partition revoked while the
batch fills never reaches the sink (librdkafka drops its messages from the batch).

Exactly once. The crash that matters falls between "objects written" and "offsets committed": the records are
consumed again, maybe in batches of other sizes, and the objects written for them must go. Object keys alone do part
of it (a batch consumed again from the same offset writes the same keys over its old objects), but not all: after a
commit the group skipped (a rebalance), several batches are uncommitted and are consumed again as one. So before it
writes a batch's objects for a partition, the sink lists them in that partition's intent marker
(``online/_pending/p{partition}.json``: entries of first offset, last offset and keys); once the batch's offsets are
committed, the worker calls :meth:`ArchiveWriter.clear` and the markers of its partitions are deleted. A marker
still there names objects whose commit may or may not have happened, and the offsets tell which: at every batch,
before writing, the sink reads the marker of each partition the batch holds (even if all its records are
unreadable), and

- an entry at or after the batch's first offset of that partition was never committed (its records are being
  consumed again, from the committed offset): its objects are deleted, then the new ones are written;
- an entry before it was committed (the crash fell between the commit and the marker's deletion), or awaits a commit
  the group skipped; its objects stay and the entry stays listed until the next commit.

Resolving markers by offset as batches come, rather than on start or on assignment, needs no rebalance hook and,
unlike deleting every listed object on start, never deletes objects whose offsets were committed. Every step can be
repeated (a retried sink deletes its own half-written objects first), and a partition has one writer: one consumer
of the group owns it at a time, and the worker finishes a batch's sink and commit before it consumes again, which is
where a revocation completes. One archive prefix holds one topic (keys do not name the topic).

So the objects never hold a record twice: uncommitted objects are deleted before their records are written again,
and a record is consumed again only if its offset was not committed. A record whose commit has not happened yet is
in the archive already (it is written again, in place of its object, if the process dies first).

Bad input never blocks the sink. Feedback that cannot be parsed is skipped and counted (the feature updater
dead-letters the same records). Redis or MinIO down raise :class:`TransientError`, which the worker retries with
backoff; if that runs out the process exits without committing and the batch is consumed again.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

from streamml import names
from streamml.errors import PoisonMessageError, StreamMLError
from streamml.features.spec import FEATURE_NAMES, LABEL, LIKE_THRESHOLD, N_FEATURES
from streamml.stores.features import RedisFeatureStore
from streamml.stores.objects import ObjectStore
from streamml.streaming.messages import Feedback, Prediction, parse
from streamml.streaming.worker import BatchResult

if TYPE_CHECKING:
    import pandas as pd

    from streamml.config import Settings

logger = logging.getLogger(__name__)

HOUR = 3600
SCHEMA = pa.schema(
    [
        ("rating_id", pa.string()),
        ("request_id", pa.string()),
        ("user_id", pa.int64()),
        ("movie_id", pa.int64()),
        ("rating", pa.float64()),
        ("event_ts", pa.int64()),
        (LABEL, pa.int32()),
        ("served", pa.bool_()),
        ("score", pa.float64()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("feature_version", pa.int64()),
        ("scored_at", pa.float64()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("kafka_timestamp", pa.int64()),
        *((name, pa.float64()) for name in FEATURE_NAMES),
    ]
)
"""The columns of every archive object."""

_HOUR_PARTITION = re.compile(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")


class ArchiveWriter:
    """Writes a batch's objects under ``prefix`` with the intent-marker protocol of the module docstring."""

    def __init__(self, objects: ObjectStore, prefix: str = names.ARCHIVE_PREFIX) -> None:
        self.objects = objects
        self.prefix = prefix

    def write(self, spans: Mapping[int, tuple[int, int]], batch: Mapping[int, Mapping[str, bytes]]) -> None:
        """Write ``batch`` (per partition, object key -> parquet) of a batch that consumed the offsets ``spans``
        (per partition, first and last), after deleting what an earlier, uncommitted write left of the same
        records."""
        for partition, (first, last) in spans.items():
            marker = names.archive_marker_key(self.prefix, partition)
            entries = _read_marker(self.objects, marker)
            stale = [e for e in entries if e["first"] >= first]
            kept = [e for e in entries if e["first"] < first]
            new = batch.get(partition, {})
            if stale:
                keys = [k for e in stale for k in e["keys"]]
                self.objects.delete_keys(keys)
                logger.warning(
                    "partition=%d offset=%d: deleted %d archive object(s) written but never committed (their "
                    "records are consumed again)",
                    partition,
                    first,
                    len(keys),
                )
            if new:
                kept.append({"first": first, "last": last, "keys": sorted(new)})
            if kept and (new or stale):
                self.objects.put_bytes(marker, json.dumps({"partition": partition, "entries": kept}).encode())
            elif stale:
                self.objects.delete_keys([marker])
            for key, body in new.items():
                self.objects.put_bytes(key, body)

    def clear(self, partitions: Sequence[int]) -> None:
        """After the commit: the objects the markers of ``partitions`` list are committed. A marker left behind
        (MinIO down just now) is harmless: the next batch of its partition keeps its committed entries."""
        try:
            self.objects.delete_keys([names.archive_marker_key(self.prefix, p) for p in partitions])
        except StreamMLError as exc:
            logger.warning(
                "intent markers of partitions %s not deleted (resolved later by offset): %s", partitions, exc
            )


def _read_marker(objects: ObjectStore, marker: str) -> list[dict[str, Any]]:
    """The entries (``first``, ``last``, ``keys``) of an intent marker; none when there is no marker."""
    raw = objects.get_bytes(marker)
    if raw is None:
        return []
    try:
        return cast(list[dict[str, Any]], json.loads(raw)["entries"])
    except (ValueError, KeyError, TypeError) as exc:
        # Guessing could delete committed records or keep duplicates: stop until someone looks.
        raise StreamMLError(f"intent marker s3://{objects.bucket}/{marker} is unreadable: {exc}") from exc


class ArchiveHandler:
    """Consumes feedback; per batch, joins each record with its stored prediction and returns the write of its
    objects as the sink (and the markers' deletion as the commit callback)."""

    def __init__(
        self, predictions: RedisFeatureStore, objects: ObjectStore, prefix: str = names.ARCHIVE_PREFIX
    ) -> None:
        self.predictions = predictions
        self.writer = ArchiveWriter(objects, prefix)
        self.prefix = prefix
        self.skipped = 0  # feedback that could not be parsed, since the process started (redeliveries count again)
        self.unserved = 0  # feedback archived without a prediction, likewise

    def __call__(self, messages: Sequence[Any]) -> BatchResult:
        result = BatchResult()
        spans: dict[int, tuple[int, int]] = {}
        feedback: list[tuple[Any, Feedback]] = []
        skipped = 0
        for msg in messages:
            partition, offset = msg.partition(), msg.offset()
            first, last = spans.get(partition, (offset, offset))
            spans[partition] = (min(first, offset), max(last, offset))
            try:
                feedback.append((msg, cast(Feedback, parse(Feedback, msg.value()))))
            except PoisonMessageError as exc:
                skipped += 1
                logger.debug("skipped feedback partition=%d offset=%d: %s", partition, offset, exc)
        if not spans:
            return result
        stored = self.predictions.read_predictions([f.request_id for _, f in feedback]) if feedback else []
        served = [_served(f, raw) for (_, f), raw in zip(feedback, stored, strict=True)]
        self.skipped += skipped  # counted once the batch is read: the worker retries a handler whose read failed
        self.unserved += sum(p is None for p in served)
        batch = self.encode(feedback, served)
        logger.info(
            "archiving %d feedback record(s) in %d object(s); skipped %d unreadable, %d unserved so far",
            len(feedback),
            sum(len(b) for b in batch.values()),
            self.skipped,
            self.unserved,
        )
        result.sink = lambda: self.writer.write(spans, batch)
        result.committed = lambda: self.writer.clear(list(spans))
        return result

    def encode(
        self, feedback: Sequence[tuple[Any, Feedback]], served: Sequence[Prediction | None]
    ) -> dict[int, dict[str, bytes]]:
        """The parquet objects of a batch: per Kafka partition, one per hour the records were sent in."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (msg, f) in enumerate(feedback):
            sent = kafka_timestamp(msg, f) // 1000
            groups.setdefault((msg.partition(), sent - sent % HOUR), []).append(i)
        out: dict[int, dict[str, bytes]] = {}
        for (partition, hour), rows in groups.items():
            rows.sort(key=lambda i: feedback[i][0].offset())
            key = names.archive_object_key(self.prefix, hour, partition, feedback[rows[0]][0].offset())
            table = archive_table([feedback[i] for i in rows], [served[i] for i in rows])
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            out.setdefault(partition, {})[key] = buffer.getvalue()
        return out


def kafka_timestamp(msg: Any, f: Feedback) -> int:
    """When ``msg`` was sent (its Kafka timestamp, unix ms), or the feedback's event time for a record without one."""
    kind, ms = msg.timestamp()
    return int(ms) if kind != TIMESTAMP_NOT_AVAILABLE and ms >= 0 else f.event_ts * 1000


def _served(f: Feedback, raw: bytes | None) -> Prediction | None:
    """The prediction served for ``f``'s request, or None when there is none that belongs to it."""
    if raw is None:
        return None
    try:
        p = cast(Prediction, parse(Prediction, raw))
    except PoisonMessageError as exc:
        logger.warning("unreadable prediction of request %s, archived as unserved: %s", f.request_id, exc)
        return None
    # A request id reused for another (user, movie) would join a rating to someone else's features.
    return p if (p.user_id, p.movie_id) == (f.user_id, f.movie_id) else None


def archive_table(feedback: Sequence[tuple[Any, Feedback]], served: Sequence[Prediction | None]) -> pa.Table:
    """Rows of :data:`SCHEMA`: each feedback record with its Kafka message and the prediction served (or None)."""
    fb = [f for _, f in feedback]
    missing = np.array([p is None for p in served], dtype=bool)
    features = np.full((N_FEATURES, len(fb)), np.nan)  # a row per feature: pa.array copies strided columns slowly
    for i, p in enumerate(served):
        if p is not None:
            features[:, i] = p.features

    def of(get: Any) -> list[Any]:
        return [get(p) if p is not None else None for p in served]

    columns: dict[str, Any] = {
        "rating_id": [f.rating_id for f in fb],
        "request_id": [f.request_id for f in fb],
        "user_id": [f.user_id for f in fb],
        "movie_id": [f.movie_id for f in fb],
        "rating": [f.rating for f in fb],
        "event_ts": [f.event_ts for f in fb],
        LABEL: [int(f.rating >= LIKE_THRESHOLD) for f in fb],
        "served": (~missing).tolist(),
        "score": of(lambda p: p.score),
        "model_name": of(lambda p: p.model_name),
        "model_version": of(lambda p: p.model_version),
        "feature_version": of(lambda p: p.feature_version),
        "scored_at": of(lambda p: p.scored_at),
        "kafka_partition": [m.partition() for m, _ in feedback],
        "kafka_offset": [m.offset() for m, _ in feedback],
        "kafka_timestamp": [kafka_timestamp(m, f) for m, f in feedback],
    }
    arrays = [pa.array(columns[field.name], field.type) for field in SCHEMA if field.name in columns]
    arrays += [pa.array(features[j], pa.float64(), mask=missing) for j in range(N_FEATURES)]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def read_archive(
    settings: Settings,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    store: ObjectStore | None = None,
    prefix: str = names.ARCHIVE_PREFIX,
) -> pd.DataFrame:
    """Every archived feedback record sent (``kafka_timestamp``) in [``since``, ``until``) (either bound optional;
    naive datetimes are UTC), with the columns of :data:`SCHEMA`, in event-time order (ties by user, movie); only the
    hour partitions that overlap the range are read.

    The objects never hold a record twice (the sink deletes a batch's uncommitted objects before it writes them
    again), and the rows are also deduplicated by (``kafka_partition``, ``kafka_offset``), for a read that races the
    archive's recovery from a crash. A replay with ``--again`` archives the same ratings again as new records (new
    request ids, new predictions); drop duplicates by ``rating_id`` to train on each rating once."""
    store = store or ObjectStore(settings.minio, names.BUCKET_FEATURES)
    low, high = _unix(since), _unix(until)
    keys = [k for k in store.keys(prefix) if k.endswith(".parquet")]  # not the intent markers
    tables = []
    for n, key in enumerate(keys, 1):
        if n % 500 == 0:
            logger.info("reading the feedback archive: %d of %d objects", n, len(keys))
        hour = _hour_of(key[len(prefix) :])
        if hour is None:
            continue
        if (low is not None and hour + HOUR <= low) or (high is not None and hour >= high):
            continue
        body = store.get_bytes(key)
        if body is not None:  # None: deleted since it was listed (its records are being written again)
            tables.append(pq.ParquetFile(io.BytesIO(body)).read().cast(SCHEMA))
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    if low is not None or high is not None:
        ts = table.column("kafka_timestamp").to_numpy()
        keep = np.ones(len(ts), dtype=bool)
        if low is not None:
            keep &= ts >= low * 1000
        if high is not None:
            keep &= ts < high * 1000
        table = table.filter(pa.array(keep))
    frame = table.to_pandas().drop_duplicates(["kafka_partition", "kafka_offset"])
    return frame.sort_values(["event_ts", "user_id", "movie_id"], kind="stable").reset_index(drop=True)


def _hour_of(relative_key: str) -> int | None:
    """The start (unix seconds) of the hour partition a key below the prefix is in, or None for other keys."""
    m = _HOUR_PARTITION.match(relative_key)
    if m is None:
        return None
    return int(datetime.strptime(f"{m[1]} {m[2]}", "%Y-%m-%d %H").replace(tzinfo=UTC).timestamp())


def _unix(when: datetime | None) -> int | None:
    if when is None:
        return None
    return int((when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp())
