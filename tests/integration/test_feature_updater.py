"""The feature updater on a real Redis keeps online features equal to the offline definition, applying each rating
once even when feedback is redelivered or the period is replayed with new request ids, and losing no update when
two updaters write the shared movie and globals states at once. Uses a Redis database of the test's own, so the
platform's feat:current is untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
from confluent_kafka import Producer
from streaming_fixtures import drain, load_history_snapshot, movielens_split, start_updater, wait_for_members

from streamml import names
from streamml.config import Settings
from streamml.errors import DataValidationError
from streamml.features import packing, spec
from streamml.stores.features import RedisFeatureStore, UpdatePlan
from streamml.streaming.clients import ensure_topics, producer_config
from streamml.streaming.messages import Feedback
from streamml.streaming.updater import FeatureUpdaterHandler

pytestmark = [pytest.mark.integration, pytest.mark.redis]


class Msg:
    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b"k"

    def topic(self) -> str:
        return names.TOPIC_FEEDBACK

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


def deliver(handler: FeatureUpdaterHandler, feedback: list[Feedback], batch: int = 250) -> list[Any]:
    """Run the handler over ``feedback`` in batches as the worker would (its sink after each); return its outputs."""
    outputs: list[Any] = []
    for i in range(0, len(feedback), batch):
        result = handler([Msg(f.encode(), i + k) for k, f in enumerate(feedback[i : i + batch])])
        if result.sink is not None:
            result.sink()
        outputs += result.outputs
    return outputs


def test_updates_match_the_incremental_definition_and_each_rating_applies_once(redis_db: redis.Redis) -> None:
    history, stream, movies = movielens_split()
    offline = load_history_snapshot(redis_db, history, movies)
    store = RedisFeatureStore(redis_db)

    sample = stream.head(3000)
    feedback = [
        Feedback(request_id=f"r{i}", user_id=int(r.userId), movie_id=int(r.movieId), rating=float(r.rating),
                 event_ts=int(r.timestamp), sent_at=1.0)
        for i, r in enumerate(sample.itertuples())
    ]  # fmt: skip
    handler = FeatureUpdaterHandler(store)
    assert deliver(handler, feedback) == []
    assert store.applied_count(1) == len(feedback)
    snapshot = {k: redis_db.get(k) for k in redis_db.scan_iter(match="feat:v1:*") if not k.endswith(b":applied")}
    deliver(handler, feedback[100:900])  # redelivered
    replayed = [f.model_copy(update={"request_id": f"second-replay-{i}"}) for i, f in enumerate(feedback)]
    deliver(handler, replayed, batch=500)  # the same ratings again under new request ids
    assert store.applied_count(1) == len(feedback)
    after = {k: redis_db.get(k) for k in redis_db.scan_iter(match="feat:v1:*") if not k.endswith(b":applied")}
    assert after == snapshot

    for f in feedback:
        offline.apply(f.user_id, f.movie_id, f.rating, f.event_ts)
    for user_id in {f.user_id for f in feedback}:
        assert packing.unpack_user(redis_db.get(names.user_features_key(1, user_id))) == offline.users[user_id]
    for movie_id in {f.movie_id for f in feedback}:
        online = packing.unpack_movie(redis_db.get(names.movie_features_key(1, movie_id)))
        assert online == offline.movies[movie_id]
    assert packing.unpack_globals(redis_db.get(names.globals_features_key(1))) == offline.globals
    assert len(redis_db.lrange(names.METRICS_APPLIED_LATENCY, 0, -1)) > 0

    # What an operator sees: `streamml features get user ID --json` prints the same state.
    user_id = feedback[0].user_id
    env = {**os.environ, "STREAMML_REDIS__DB": "9"}
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "streamml", "features", "get", "user", str(user_id), "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    shown = json.loads(out.stdout)
    assert (shown["feature_version"], shown["id"]) == (1, user_id)
    assert shown["count"] == offline.users[user_id].count and shown["total"] == offline.users[user_id].total
    missing = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "streamml", "features", "get", "user", "999999999"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode == 1 and "has no online state" in missing.stderr


def test_features_served_from_the_updated_store_equal_the_offline_replay_row_for_row(redis_db: redis.Redis) -> None:
    """Feedback applied group by group (one timestamp at a time, as a keeping-up updater does); before each group the
    scorer's path (one MGET, unpack, feature_matrix) must give the offline replay's features for every row of it."""
    history, stream, movies = movielens_split()
    load_history_snapshot(redis_db, history, movies)
    store = RedisFeatureStore(redis_db)
    sample = stream.head(2500)
    handler = FeatureUpdaterHandler(store)
    served = []
    for _, group in sample.groupby("timestamp", sort=True):
        users, movie_ids = group["userId"].astype(int).tolist(), group["movieId"].astype(int).tolist()
        blobs = store.get_many(1, users, movie_ids)
        served.append(
            spec.feature_matrix(
                [packing.unpack_user(b) if b is not None else None for b in blobs[: len(users)]],
                [packing.unpack_movie(b) if b is not None else None for b in blobs[len(users) : -1]],
                packing.unpack_globals(blobs[-1]),
                group["timestamp"].to_numpy(),
            )
        )
        feedback = [
            Feedback(request_id=f"r{r.Index}", user_id=int(r.userId), movie_id=int(r.movieId), rating=float(r.rating),
                     event_ts=int(r.timestamp))
            for r in group.itertuples()
        ]  # fmt: skip
        assert deliver(handler, feedback) == []
    online = np.vstack(served)
    assert online.shape == (len(sample), spec.N_FEATURES)
    columns = [spec.FEATURE_NAMES.index(name) for name in spec.SEQUENTIAL_FEATURES]
    offline = spec.point_in_time_features(spec.FeatureState.from_movies(movies), pd.concat([history, sample]))
    np.testing.assert_allclose(online, offline[len(history) :], rtol=0, atol=1e-9)
    assert (online[:, columns] != online[0, columns]).any(axis=0).all()  # every sequential column varies


def test_a_corrupt_state_refuses_only_its_feedback_and_reloading_resets_the_applied_set(redis_db: redis.Redis) -> None:
    history, stream, movies = movielens_split()
    load_history_snapshot(redis_db, history, movies)
    store = RedisFeatureStore(redis_db)
    rows = list(stream.head(200).itertuples())
    victim = int(rows[0].userId)
    corrupt = packing.pack_user(spec.UserState(count=3, total=float("nan"), total_sq=9.0, likes=1, last_rating=4.0))
    with pytest.raises(DataValidationError, match="total nan is not finite"):  # refused for its NaN sum, nothing else
        packing.unpack_user(corrupt)
    redis_db.set(names.user_features_key(1, victim), corrupt)
    feedback = [
        Feedback(request_id=f"r{i}", user_id=int(r.userId), movie_id=int(r.movieId), rating=float(r.rating),
                 event_ts=int(r.timestamp))
        for i, r in enumerate(rows)
    ]  # fmt: skip
    outputs = deliver(FeatureUpdaterHandler(store), feedback)
    refused = sum(f.user_id == victim for f in feedback)
    assert len(outputs) == refused and all(o.topic == names.TOPIC_REQUESTS_DLQ for o in outputs)
    assert store.applied_count(1) == len(feedback) - refused

    # Loading the version again (materialize) replaces its blobs and empties its applied set in one transaction,
    # and removes the users the snapshot does not hold.
    redis_db.set(names.user_features_key(1, 10**9), b"stream-only user")
    snapshot_keys = [(names.user_features_key(1, victim), packing.pack_user(spec.UserState()))]
    store.load(1, snapshot_keys)
    assert store.applied_count(1) == 0
    assert redis_db.get(names.user_features_key(1, 10**9)) is None
    assert redis_db.keys("feat:v1:*") == [names.user_features_key(1, victim).encode()]


def feedback_of(rows: pd.DataFrame, prefix: str) -> list[Feedback]:
    return [
        Feedback(request_id=f"{prefix}{i}", user_id=int(r.userId), movie_id=int(r.movieId), rating=float(r.rating),
                 event_ts=int(r.timestamp), sent_at=1.0)
        for i, r in enumerate(rows.itertuples())
    ]  # fmt: skip


def sums(state: Any) -> tuple[Any, ...]:
    """The fields of a state that do not depend on how ratings of different users interleave (rating sums are exact:
    ratings are multiples of 0.5); two updaters interleave their batches, so residuals (a user's ``recent``) may
    differ, these may not."""
    if isinstance(state, spec.UserState):
        return (state.count, state.total, state.total_sq, state.likes, state.last_ts, state.first_ts,
                state.last_rating, list(state.genre_count), list(state.genre_total),
                state.half_stars, state.five_stars, state.low_ratings)  # fmt: skip
    if isinstance(state, spec.MovieState):
        return (state.count, state.total, state.total_sq, state.likes, state.first_ts)
    return (state.count, state.total, state.likes)


class Interleaved(RedisFeatureStore):
    """A store whose next atomic update lets ``between`` run after its watched read and before its write."""

    def __init__(self, client: redis.Redis, between: Any) -> None:
        super().__init__(client)
        self.between = [between]
        self.conflicts = -1

    def update_atomically(self, version: int, rating_ids: Any, user_ids: Any, movie_ids: Any, plan: UpdatePlan,
                          attempts: int = 100) -> int:  # fmt: skip
        def interleaved(applied: list[bool], blobs: list[bytes | None]) -> Any:
            if self.between:
                self.between.pop()()
            return plan(applied, blobs)

        self.conflicts = super().update_atomically(version, rating_ids, user_ids, movie_ids, interleaved, attempts)
        return self.conflicts


def test_a_write_between_the_watched_read_and_the_write_makes_the_update_run_again(
    settings: Settings, redis_db: redis.Redis
) -> None:
    history, stream, movies = movielens_split()
    offline = load_history_snapshot(redis_db, history, movies)
    first, second = feedback_of(stream.iloc[:300], "a"), feedback_of(stream.iloc[300:600], "b")
    other = redis.Redis(  # another updater: its own connection to the test's database
        host=settings.redis.host, port=settings.redis.port, db=9, password=settings.redis.password.get_secret_value()
    )
    rival = FeatureUpdaterHandler(RedisFeatureStore(other))
    store = Interleaved(redis_db, lambda: deliver(rival, second, batch=300))
    assert deliver(FeatureUpdaterHandler(store), first, batch=300) == []
    other.close()
    assert store.conflicts == 1
    assert store.applied_count(1) == 600
    for f in [*second, *first]:  # in the order the writes went through
        offline.apply(f.user_id, f.movie_id, f.rating, f.event_ts)
    assert packing.unpack_globals(redis_db.get(names.globals_features_key(1))) == offline.globals
    for f in [*first, *second]:
        assert packing.unpack_user(redis_db.get(names.user_features_key(1, f.user_id))) == offline.users[f.user_id]
        assert packing.unpack_movie(redis_db.get(names.movie_features_key(1, f.movie_id))) == offline.movies[f.movie_id]


@pytest.mark.kafka
def test_two_updaters_under_load_lose_no_update(
    settings: Settings, redis_db: redis.Redis, require: Callable[[str], None], uid: str
) -> None:
    require("kafka")
    history, stream, movies = movielens_split()
    offline = load_history_snapshot(redis_db, history, movies)
    feedback = feedback_of(stream, f"{uid}-")
    topic, dlq, group = f"test.{uid}.feedback", f"test.{uid}.dlq", f"test-updaters-{uid}"
    ensure_topics(settings.kafka, [topic, dlq], partitions=4)
    db = redis_db.connection_pool.connection_kwargs["db"]
    updaters = [start_updater(settings, topic, dlq, group, db) for _ in range(2)]
    store = RedisFeatureStore(redis_db)
    try:
        wait_for_members(settings, group, 2)  # both have partitions before the load starts
        producer = Producer(producer_config(settings.kafka))
        for f in feedback:  # keyed by user, as the platform's feedback is: a user's ratings stay in order
            producer.produce(topic, key=str(f.user_id), value=f.encode())
            producer.poll(0)
        assert producer.flush(60) == 0
        deadline = time.monotonic() + 300
        while store.applied_count(1) < len(feedback) and time.monotonic() < deadline:
            assert all(u.poll() is None for u in updaters), "an updater exited"
            time.sleep(0.5)
        assert store.applied_count(1) == len(feedback)
    finally:
        for u in updaters:
            u.terminate()
        for u in updaters:
            u.wait(30)
    assert drain(settings, dlq, 0, uid, timeout=1) == []
    for f in feedback:
        offline.apply(f.user_id, f.movie_id, f.rating, f.event_ts)
    assert sums(packing.unpack_globals(redis_db.get(names.globals_features_key(1)))) == sums(offline.globals)
    for user_id in {f.user_id for f in feedback}:
        online = packing.unpack_user(redis_db.get(names.user_features_key(1, user_id)))
        assert sums(online) == sums(offline.users[user_id]), user_id
    for movie_id in {f.movie_id for f in feedback}:
        online = packing.unpack_movie(redis_db.get(names.movie_features_key(1, movie_id)))
        assert sums(online) == sums(offline.movies[movie_id]), movie_id
