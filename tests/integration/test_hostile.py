"""Hostile traffic on the real stack, through the platform's own scorer, feature updater and metrics aggregator
(the programs supervisord runs): 1,000 hostile messages (extreme ints, NaN and Infinity literals, huge and binary
payloads, wrong types, deep nesting, forged predictions) interleaved with the whole stream period replayed twice as
requests and feedback. Afterwards:

- no program restarted (supervisord's pid and start time of each are unchanged);
- every hostile message is in the DLQ, once, with the reason it must have (written here, not computed by the code);
- every valid request was scored exactly once (one record on predictions.v1 and its ``pred:{id}``);
- every online user, movie and the globals state equals the offline definition on history + stream (each rating
  applied once although the period was replayed twice), to 1e-9;
- materializing the version again resets it: its applied set is empty and the stream-only users are gone.

Runs on the platform's topics and feature version (it resets the version with ``materialize`` first and last), after
the training run of the session.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
from streaming_fixtures import count_results

from streamml import names
from streamml.config import Settings
from streamml.data import movielens
from streamml.features import packing, spec
from streamml.features.batch import read_part
from streamml.features.materialize import materialize
from streamml.runtime.stack import LocalStack
from streamml.stores.features import RedisFeatureStore
from streamml.stores.redis_client import redis_client
from streamml.streaming.clients import consumer_config, producer_config
from streamml.streaming.messages import DeadLetter, Feedback, Prediction, RatingRequest
from streamml.streaming.runners import wait_until_caught_up

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

PROGRAMS = ("scorer", "feature-updater", "metrics-aggregator")
N_HOSTILE = 1_000
REQ = b'{"schema_version":1,"request_id":"h","user_id":1,"movie_id":1,"event_ts":1,"sent_at":1'
FB = b'{"schema_version":1,"request_id":"h","user_id":1,"movie_id":1,"rating":4.0,"event_ts":1'
FEATURES = ",".join(["0.0"] * spec.N_FEATURES).encode()
PRED = (
    b'{"schema_version":1,"request_id":"h","user_id":1,"movie_id":1,"label":1,"model_name":"m","model_version":"1",'
    b'"feature_version":1,"cold_start":false,"event_ts":1,"sent_at":1.0,"scored_at":1.0,"globals_used":[1,4.0,1]'
)

# (topic, payload, the reason its dead letter must give)
HOSTILE: tuple[tuple[str, bytes | None, str], ...] = (
    (names.TOPIC_REQUESTS, REQ.replace(b'"event_ts":1', b'"event_ts":9223372036854775808') + b"}", "out_of_range"),
    (names.TOPIC_REQUESTS, REQ.replace(b'"user_id":1', b'"user_id":2147483648') + b"}", "out_of_range"),
    (names.TOPIC_REQUESTS, REQ.replace(b'"movie_id":1', b'"movie_id":-1') + b"}", "out_of_range"),
    (names.TOPIC_REQUESTS, REQ.replace(b'"sent_at":1', b'"sent_at":NaN') + b"}", "out_of_range"),
    (names.TOPIC_REQUESTS, REQ.replace(b'"sent_at":1', b'"sent_at":Infinity') + b"}", "out_of_range"),
    (names.TOPIC_REQUESTS, REQ.replace(b'"sent_at":1', b'"sent_at":-Infinity') + b"}", "out_of_range"),
    (names.TOPIC_REQUESTS, REQ.replace(b'"event_ts":1', b'"event_ts":1e400') + b"}", "invalid_fields"),
    (
        names.TOPIC_REQUESTS,
        REQ.replace(b'"request_id":"h"', b'"request_id":"' + b"x" * 500 + b'"') + b"}",
        "out_of_range",
    ),
    (names.TOPIC_REQUESTS, REQ.replace(b'"request_id":"h"', b'"request_id":"a b"') + b"}", "out_of_range"),
    (names.TOPIC_REQUESTS, REQ.replace(b'"user_id":1', b'"user_id":"1"') + b"}", "invalid_fields"),
    (names.TOPIC_REQUESTS, REQ.replace(b'"user_id":1', b'"user_id":true') + b"}", "invalid_fields"),
    (names.TOPIC_REQUESTS, REQ.replace(b'"user_id":1', b'"user_id":1.5') + b"}", "invalid_fields"),
    (names.TOPIC_REQUESTS, REQ.replace(b'"user_id":1', b'"user_id":{"$gt":1}') + b"}", "invalid_fields"),
    (names.TOPIC_REQUESTS, REQ + b',"admin":true}', "invalid_fields"),
    (names.TOPIC_REQUESTS, b"[" * 5000 + b"]" * 5000, "invalid_json"),
    (names.TOPIC_REQUESTS, b'{"a":' * 2000 + b"1" + b"}" * 2000, "invalid_json"),
    (names.TOPIC_REQUESTS, bytes(range(256)), "invalid_json"),
    (names.TOPIC_REQUESTS, b"\xff\xfe" + REQ + b"}", "invalid_json"),
    (names.TOPIC_REQUESTS, b'{"request_id":"' + b"a" * 20_000 + b'"}', "too_large"),
    (names.TOPIC_REQUESTS, None, "empty"),
    (names.TOPIC_REQUESTS, b"null", "invalid_fields"),
    (names.TOPIC_FEEDBACK, FB.replace(b'"rating":4.0', b'"rating":NaN') + b"}", "out_of_range"),
    (names.TOPIC_FEEDBACK, FB.replace(b'"rating":4.0', b'"rating":3.7') + b"}", "out_of_range"),
    (names.TOPIC_FEEDBACK, FB.replace(b'"rating":4.0', b'"rating":1e308') + b"}", "out_of_range"),
    (names.TOPIC_FEEDBACK, FB.replace(b'"event_ts":1', b'"event_ts":9223372036854775808') + b"}", "out_of_range"),
    (names.TOPIC_FEEDBACK, FB + b',"rating_id":"7:7:7"}', "invalid_fields"),
    (names.TOPIC_FEEDBACK, b"{" * 4000, "invalid_json"),
    (names.TOPIC_PREDICTIONS, PRED + b',"score":NaN,"features":[' + FEATURES + b"]}", "out_of_range"),
    (names.TOPIC_PREDICTIONS, PRED + b',"score":2.5,"features":[' + FEATURES + b"]}", "out_of_range"),
    (names.TOPIC_PREDICTIONS, PRED + b',"score":0.5,"features":[1.0]}', "out_of_range"),
    (names.TOPIC_PREDICTIONS, PRED + b',"score":0.5,"features":[' + FEATURES + b",Infinity]}", "out_of_range"),
    (names.TOPIC_PREDICTIONS, b"\x00" * 64, "invalid_json"),
)


def _at_end(settings: Settings, topic: str) -> Consumer:
    consumer = Consumer(consumer_config(settings.kafka, f"test-hostile-{uuid.uuid4().hex[:8]}"))
    meta = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in meta.topics[topic].partitions])
    consumer.consume(1, 1.0)  # resolve the end offsets now, before anything is produced
    return consumer


def _starts(stack: LocalStack) -> dict[str, tuple[int, int]]:
    processes = stack.supervisor.processes()
    return {p: (processes[p]["pid"], processes[p]["start"]) for p in PROGRAMS}


# The sequential families' state depends on the order ratings are applied in (a residual is taken against the
# movie's and the global state at the time). This test floods the feedback topic's partitions, so the updater applies
# ratings out of event order across users: those fields must be finite, not equal to the in-order replay. Everything
# else (counts, sums, extremes) is order-free and must match exactly.
ORDER_DEPENDENT = {
    "residual_total", "last_rating", "recent", "genre_residual_recent", "genre_residual_total", "genre_like_recent",
    "residual_sq_total", "residual_sq_recent", "line_x", "line_xx", "line_xy", "line_y",
}  # fmt: skip


def _same_state(online: Any, offline: Any) -> bool:
    """Order-free fields: counts and metadata equal, sums equal to 1e-9; order-dependent ones finite."""
    for f in dataclasses.fields(offline):
        a, b = getattr(online, f.name), getattr(offline, f.name)
        if f.name in ORDER_DEPENDENT:
            if not all(math.isfinite(x) for x in (a if isinstance(a, list) else [a]) if x is not None):
                return False
            continue
        if isinstance(b, list):
            if len(a) != len(b) or any(abs(x - y) > 1e-9 for x, y in zip(a, b, strict=True)):
                return False
        elif isinstance(b, float):
            if abs(a - b) > 1e-9:
                return False
        elif a != b:
            return False
    return True


def test_hostile_traffic_never_stops_or_corrupts_the_platform(
    settings: Settings, training_run: dict[str, Any], movielens_dir: Path, require: Callable[[str], None], uid: str
) -> None:
    for service in ("kafka", "redis", "minio"):
        require(service)
    client: redis.Redis = redis_client(settings.redis)
    store = RedisFeatureStore(client)
    version = store.current_version()
    assert version is not None
    wait_until_caught_up(settings)
    materialize(settings, version)  # start from the batch snapshot, whatever earlier tests applied
    history = read_part(settings, version, "history", ["userId", "movieId", "rating", "timestamp"]).to_pandas()
    stream = read_part(settings, version, "stream", ["userId", "movieId", "rating", "timestamp"]).to_pandas()
    history = history.sort_values(["timestamp", "userId", "movieId"]).reset_index(drop=True)
    stream = stream.sort_values(["timestamp", "userId", "movieId"]).reset_index(drop=True)
    _, movies = movielens.load(movielens_dir)

    stack = LocalStack(settings)
    before = _starts(stack)
    states = {p: stack.supervisor.processes()[p]["statename"] for p in PROGRAMS}
    assert set(states.values()) == {"RUNNING"}, states
    predictions_tail = _at_end(settings, names.TOPIC_PREDICTIONS)
    dlq_tail = _at_end(settings, names.TOPIC_REQUESTS_DLQ)
    producer = Producer(producer_config(settings.kafka, client_id=f"test-hostile-{uid}"))

    request_ids: list[str] = []
    hostile_keys: dict[bytes, str] = {}
    hostile_every = 2 * len(stream) // N_HOSTILE
    sent = 0
    for replay in ("first", "second"):  # the same period twice: new request ids, the same rating ids
        for row in stream.itertuples():
            request = RatingRequest(
                request_id=f"{uid}-{replay}-{row.Index}", user_id=int(row.userId), movie_id=int(row.movieId),
                event_ts=int(row.timestamp), sent_at=time.time(),
            )  # fmt: skip
            feedback = Feedback(
                request_id=request.request_id, user_id=request.user_id, movie_id=request.movie_id,
                rating=float(row.rating), event_ts=request.event_ts,
            )  # fmt: skip
            producer.produce(names.TOPIC_REQUESTS, key=str(request.user_id), value=request.encode())
            producer.produce(names.TOPIC_FEEDBACK, key=str(request.user_id), value=feedback.encode())
            request_ids.append(request.request_id)
            if sent % hostile_every == 0 and len(hostile_keys) < N_HOSTILE:
                topic, payload, reason = HOSTILE[len(hostile_keys) % len(HOSTILE)]
                key = f"hostile-{uid}-{len(hostile_keys)}".encode()
                hostile_keys[key] = reason
                producer.produce(topic, key=key, value=payload)
            sent += 1
            producer.poll(0)
    assert producer.flush(60) == 0
    assert len(hostile_keys) == N_HOSTILE

    wanted = set(request_ids)
    scored: dict[str, int] = {}
    dead: dict[bytes, list[DeadLetter]] = {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (len(scored) < len(wanted) or len(dead) < N_HOSTILE):
        for msg in predictions_tail.consume(1000, 0.5):
            if msg.error() is None and msg.key() not in hostile_keys:  # the forged ones are ours
                p = Prediction.model_validate_json(msg.value())
                if p.request_id in wanted:
                    scored[p.request_id] = scored.get(p.request_id, 0) + 1
        for msg in dlq_tail.consume(1000, 0.1):
            if msg.error() is None and msg.key() in hostile_keys:
                dead.setdefault(msg.key(), []).append(DeadLetter.model_validate_json(msg.value()))
    wait_until_caught_up(settings)  # every request scored and every feedback message consumed
    for msg in predictions_tail.consume(10_000, 2.0):
        if msg.error() is not None or msg.key() in hostile_keys:
            continue
        if (rid := Prediction.model_validate_json(msg.value()).request_id) in wanted:
            scored[rid] += 1
    predictions_tail.close()
    dlq_tail.close()

    assert _starts(stack) == before, "a streaming program restarted"
    wrong = {
        k: (hostile_keys[k], [d.reason for d in v])
        for k, v in dead.items()
        if [d.reason for d in v] != [hostile_keys[k]]
    }
    assert not wrong, f"dead letters with the wrong reason or more than one: {list(wrong.items())[:5]}"
    missing = set(hostile_keys) - set(dead)
    assert not missing, f"{len(missing)} hostile messages not in the DLQ, e.g. {sorted(missing)[:3]}"
    assert len(scored) == len(wanted) and set(scored.values()) == {1}
    assert count_results(client, request_ids) == len(request_ids)

    offline = spec.FeatureState.from_movies(movies)
    spec.point_in_time_features(offline, history)
    spec.point_in_time_features(offline, stream)
    assert store.applied_count(version) == len(stream)
    users, movie_ids = sorted(offline.users), sorted(offline.movies)
    blobs = store.get_many(version, users, movie_ids)
    bad_users = [
        u
        for u, b in zip(users, blobs, strict=False)
        if b is None or not _same_state(packing.unpack_user(b), offline.users[u])
    ]
    bad_movies = [
        m for m, b in zip(movie_ids, blobs[len(users) :], strict=False)
        if b is None or not _same_state(packing.unpack_movie(b), offline.movies[m])
    ]  # fmt: skip
    assert not bad_users and not bad_movies, (bad_users[:5], bad_movies[:5])
    assert _same_state(packing.unpack_globals(blobs[-1]), offline.globals)
    stored_users = set(client.scan_iter(match=f"feat:v{version}:user:*", count=10_000))
    assert len(stored_users) == len(users)

    # Materializing again resets the version: its applied set is emptied and the stream's new users are gone.
    stream_only = set(users) - set(history["userId"])
    materialize(settings, version)
    assert store.applied_count(version) == 0
    if stream_only:
        assert store.get_many(version, sorted(stream_only), [])[0] is None
