"""The feature updater on a real Redis keeps online features equal to the offline definition, applying each rating
once even when feedback is redelivered or the period is replayed with new request ids. Uses a Redis database of the
test's own, so the platform's feat:current is untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import msgpack
import numpy as np
import pandas as pd
import pytest
import redis
from streaming_fixtures import load_history_snapshot, movielens_split

from streamml import names
from streamml.errors import DataValidationError
from streamml.features import packing, spec
from streamml.features.backfill import backfill
from streamml.stores.features import RedisFeatureStore
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


def test_features_served_from_the_updated_store_equal_the_backfill_row_for_row(redis_db: redis.Redis) -> None:
    """Feedback applied group by group (one timestamp at a time, as a keeping-up updater does); before each group the
    scorer's path (one MGET, unpack, feature_matrix) must give the backfill's features for every row of it."""
    history, stream, movies = movielens_split()
    load_history_snapshot(redis_db, history, movies)
    store = RedisFeatureStore(redis_db)
    sample = stream.head(2500)
    cutoff = int(stream["timestamp"].iloc[0])
    expected = backfill(pd.concat([history, sample]), movies, cutoff).rows.iloc[len(history) :]
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
    np.testing.assert_allclose(online[:, columns], expected[list(spec.SEQUENTIAL_FEATURES)], rtol=0, atol=1e-9)
    offline = spec.point_in_time_features(spec.FeatureState.from_movies(movies), pd.concat([history, sample]))
    np.testing.assert_allclose(online, offline[len(history) :], rtol=0, atol=1e-9)
    assert (online[:, columns] != online[0, columns]).any(axis=0).all()  # every sequential column varies


def test_a_corrupt_state_refuses_only_its_feedback_and_reloading_resets_the_applied_set(redis_db: redis.Redis) -> None:
    history, stream, movies = movielens_split()
    load_history_snapshot(redis_db, history, movies)
    store = RedisFeatureStore(redis_db)
    rows = list(stream.head(200).itertuples())
    victim = int(rows[0].userId)
    corrupt = msgpack.packb(
        [packing.STATE_FORMAT, 3, float("nan"), 9.0, 1, None, [], 0.0, 4.0, [0.0] * spec.N_RECENT, [0, 0, 0]]
        + [[0.0] * 6, None]
    )
    with pytest.raises(DataValidationError, match="sum nan"):  # refused for its NaN sum, nothing else
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
