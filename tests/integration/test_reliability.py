"""Reliability on the real broker and Redis: a scorer killed with SIGKILL mid-stream and restarted leaves every
request with exactly one prediction in Redis and none missing; malformed events mixed in never stop it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from confluent_kafka import Producer
from streaming_fixtures import drain, load_history_snapshot, movielens_split

from streamml import names
from streamml.config import Settings
from streamml.streaming.clients import ensure_topics, producer_config
from streamml.streaming.messages import DeadLetter, RatingRequest

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

N_REQUESTS = 20_000
N_MALFORMED = 1_000


def start_scorer(topics: list[str], group: str, db: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "STREAMML_REDIS__DB": str(db)}
    script = Path(__file__).with_name("scorer_proc.py")
    return subprocess.Popen([sys.executable, str(script), *topics, group], env=env)  # noqa: S603


def results(client: redis.Redis, ids: list[str]) -> int:
    found = 0
    for start in range(0, len(ids), 5000):
        found += sum(v is not None for v in client.mget([names.prediction_key(i) for i in ids[start : start + 5000]]))
    return found


def test_kill_9_mid_stream_loses_nothing_and_poison_never_blocks(
    settings: Settings, redis_db: redis.Redis, require: Callable[[str], None], uid: str
) -> None:
    require("kafka")
    history, stream, movies = movielens_split()
    load_history_snapshot(redis_db, history, movies)
    topics = [f"test.{uid}.{t}" for t in ("requests", "predictions", "dlq")]
    ensure_topics(settings.kafka, topics, partitions=3)
    rows = stream.head(N_REQUESTS)
    ids = [f"{uid}-{i}" for i in range(len(rows))]
    producer = Producer(producer_config(settings.kafka))
    every = len(rows) // N_MALFORMED
    for i, r in enumerate(rows.itertuples()):
        request = RatingRequest(
            request_id=ids[i], user_id=int(r.userId), movie_id=int(r.movieId), event_ts=int(r.timestamp), sent_at=0.0
        )
        producer.produce(topics[0], key=str(r.userId), value=request.encode())
        if i % every == 0:
            producer.produce(topics[0], key=b"bad", value=json.dumps({"request_id": i, "user_id": "x"}).encode())
        producer.poll(0)
    assert producer.flush(60) == 0

    db = redis_db.connection_pool.connection_kwargs["db"]
    scorer = start_scorer(topics, f"test-reliability-{uid}", db)
    deadline = time.monotonic() + 120
    while results(redis_db, ids) < len(ids) // 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    scorer.send_signal(signal.SIGKILL)
    scorer.wait(10)
    killed_at = results(redis_db, ids)
    assert 0 < killed_at < len(ids), "the kill must land mid-stream"

    scorer = start_scorer(topics, f"test-reliability-{uid}", db)
    try:
        deadline = time.monotonic() + 180
        while results(redis_db, ids) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert scorer.poll() is None, "the scorer must stay up"
    finally:
        scorer.terminate()
        scorer.wait(30)
    assert results(redis_db, ids) == len(ids)  # exactly one key per request id: none missing, none extra
    n_bad = len(range(0, len(rows), every))
    dead = [DeadLetter.model_validate_json(v) for v in drain(settings, topics[2], n_bad, uid)]
    assert len({(d.partition, d.offset) for d in dead}) == n_bad  # each at least once (redelivery may repeat)
    assert all(d.error_type == "PoisonMessageError" and d.error for d in dead)
    assert len(list(redis_db.scan_iter(match=f"pred:{uid}-*", count=10_000))) == len(ids)
