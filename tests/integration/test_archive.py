"""The feedback archive on the real broker, Redis and MinIO: the sink is killed between writing a batch's objects and
committing its offsets, restarted with another batch size, and every feedback record is in the archive exactly once,
joined with the prediction stored for its request.

The test has its own topic, consumer group, Redis database 9 (flushed) and MinIO prefix (deleted at the end)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq
import pytest
import redis
from confluent_kafka import Consumer, Producer

from streamml import names
from streamml.config import Settings
from streamml.features.spec import FEATURE_NAMES, N_FEATURES
from streamml.stores.features import RedisFeatureStore
from streamml.stores.objects import ObjectStore
from streamml.streaming.archive import ArchiveHandler, read_archive
from streamml.streaming.clients import consumer_config, ensure_topics, producer_config
from streamml.streaming.messages import Feedback, Prediction
from streamml.streaming.runners import consumer_lag
from streamml.streaming.worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.redis, pytest.mark.minio]

N_FEEDBACK = 3000
HOUR0 = 1_500_000_000 - 1_500_000_000 % 3600


class Crash(Exception):  # noqa: N818 - the process dies here
    """The process is killed at this point."""


class CrashingConsumer:
    """A real consumer whose commit number ``crash_at`` kills the process (before the offsets reach the broker)."""

    def __init__(self, consumer: Consumer, crash_at: int) -> None:
        self.consumer = consumer
        self.crash_at = crash_at
        self.commits = 0

    def commit(self, **kwargs: Any) -> Any:
        self.commits += 1
        if self.commits == self.crash_at:
            raise Crash("killed between the objects and the commit")
        return self.consumer.commit(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)


@pytest.fixture
def prefix(settings: Settings, require: Callable[[str], None], uid: str) -> Iterator[str]:
    require("minio")
    prefix = f"tests/{uid}/{names.ARCHIVE_PREFIX}"
    yield prefix
    ObjectStore(settings.minio, names.BUCKET_FEATURES).delete_prefix(prefix)


def served_prediction(f: Feedback) -> Prediction:
    return Prediction(
        request_id=f.request_id, user_id=f.user_id, movie_id=f.movie_id, score=(f.movie_id % 100) / 100, label=0,
        model_name="movielens-like", model_version="3", feature_version=1, cold_start=False, event_ts=f.event_ts,
        sent_at=1.0, scored_at=1.5, features=tuple(float(f.movie_id + j) for j in range(N_FEATURES)),
        globals_used=(1, 4.0, 1),
    )  # fmt: skip


def archive_worker(settings: Settings, consumer: Any, topic: str, store: redis.Redis, prefix: str, size: int) -> Worker:
    handler = ArchiveHandler(RedisFeatureStore(store), ObjectStore(settings.minio, names.BUCKET_FEATURES), prefix)
    producer = Producer(producer_config(settings.kafka))
    return Worker(consumer, producer, [topic], handler, batch_size=size, poll_timeout=1.0)


def test_a_sink_killed_before_its_commit_archives_every_feedback_record_exactly_once(
    settings: Settings, redis_db: redis.Redis, require: Callable[[str], None], uid: str, prefix: str
) -> None:
    require("kafka")
    topic, group = f"test.{uid}.feedback", f"test-archive-{uid}"
    ensure_topics(settings.kafka, [topic], partitions=3)
    feedback = [
        Feedback(request_id=f"{uid}-{i}", user_id=i % 97, movie_id=1000 + i, rating=(i % 10 + 1) / 2,
                 event_ts=HOUR0 + i * 12, sent_at=1.0)
        for i in range(N_FEEDBACK)
    ]  # fmt: skip
    served = [f for f in feedback if f.movie_id % 4]  # a quarter were never scored (or expired)
    RedisFeatureStore(redis_db).write_predictions(
        [(names.prediction_key(f.request_id), served_prediction(f).encode()) for f in served], ttl_seconds=3600
    )
    producer = Producer(producer_config(settings.kafka))
    sent_from = time.time()
    for f in feedback:
        producer.produce(topic, key=str(f.user_id), value=f.encode())
        producer.poll(0)
    producer.produce(topic, key=b"bad", value=b"{not feedback")  # skipped, never blocking
    assert producer.flush(30) == 0
    sent_to = time.time() + 1

    # The first run dies at its third commit: two batches committed, the third's objects written but not committed.
    first = CrashingConsumer(Consumer(consumer_config(settings.kafka, group)), crash_at=3)
    with pytest.raises(Crash):
        archive_worker(settings, first, topic, redis_db, prefix, size=400).run()
    objects = ObjectStore(settings.minio, names.BUCKET_FEATURES)
    assert any(k.startswith(prefix + names.ARCHIVE_PENDING) for k in objects.keys(prefix)), "no intent marker left"
    lag = consumer_lag(settings, group, topic)
    assert 0 < sum(lag().values()) < N_FEEDBACK + 1, "the kill must land mid-stream"

    # Restarted with another batch size: the uncommitted batch is consumed again and its objects replaced.
    worker = archive_worker(
        settings, Consumer(consumer_config(settings.kafka, group)), topic, redis_db, prefix, size=170
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while sum(lag().values()) > 0 and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.5)
        assert sum(lag().values()) == 0, "the restarted sink did not catch up"
    finally:
        worker.stop()
        thread.join(30)

    # Every object as stored (no reader's deduplication): each record exactly once.
    keys = list(objects.keys(prefix))
    assert not [k for k in keys if names.ARCHIVE_PENDING in k], "intent markers left after the last commit"
    rows: list[dict[str, Any]] = []
    for key in keys:
        body = objects.get_bytes(key)
        assert body is not None
        rows += pq.ParquetFile(io.BytesIO(body)).read().to_pylist()
    assert sorted(r["rating_id"] for r in rows) == sorted(f.rating_id for f in feedback)
    assert len({(r["kafka_partition"], r["kafka_offset"]) for r in rows}) == N_FEEDBACK

    frame = read_archive(settings, prefix=prefix)
    assert len(frame) == N_FEEDBACK and frame["rating_id"].is_unique
    assert int(frame["served"].sum()) == len(served)
    row = frame.set_index("request_id").loc[served[0].request_id]
    assert row["served"] and row["model_version"] == "3" and row["score"] == served_prediction(served[0]).score
    assert [row[name] for name in FEATURE_NAMES] == list(served_prediction(served[0]).features)
    unserved = frame[~frame["served"]]
    assert unserved["score"].isna().all() and unserved[FEATURE_NAMES[0]].isna().all()
    # Hour partitions of the send time (the broker's record timestamps, now), not of the ten hours of event time.
    assert frame["event_ts"].max() - frame["event_ts"].min() > 9 * 3600
    assert (sent_from - 1) * 1000 <= frame["kafka_timestamp"].min() <= frame["kafka_timestamp"].max() <= sent_to * 1000
    for key in keys:
        hour = datetime.strptime(key[len(prefix) :].split("/p")[0], "date=%Y-%m-%d/hour=%H").replace(tzinfo=UTC)
        sent = pq.ParquetFile(io.BytesIO(objects.get_bytes(key) or b"")).read().column("kafka_timestamp").to_numpy()
        assert (sent // 3_600_000 == int(hour.timestamp()) // 3600).all(), key
