"""Shared set-up for streaming tests: ml-latest-small's history snapshot loaded as feature version 1 into a Redis
database of the test's own, and the offline state to compare with."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest
import redis
from confluent_kafka import Consumer

from streamml import names
from streamml.config import Settings
from streamml.data import movielens
from streamml.features import spec
from streamml.stores.features import RedisFeatureStore
from streamml.streaming.clients import consumer_config


def movielens_split() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    directory = os.environ.get("STREAMML_MOVIELENS_DIR")
    if not directory:
        pytest.fail("set STREAMML_MOVIELENS_DIR (CI uses ../shared/datasets/ml-latest-small)")
    ratings, movies = movielens.load(Path(directory))
    history, stream, _ = movielens.time_split(ratings)
    return history, stream, movies


def load_history_snapshot(client: redis.Redis, history: pd.DataFrame, movies: pd.DataFrame) -> spec.FeatureState:
    """Replay history, write its snapshot as version 1, activate it; return the offline state."""
    state = spec.FeatureState.from_movies(movies)
    spec.replay(state, history)
    users, movie_blobs, globals_state = spec.snapshot(state)
    store = RedisFeatureStore(client)
    items = [(names.user_features_key(1, u), b) for u, b in users.items()]
    items += [(names.movie_features_key(1, m), b) for m, b in movie_blobs.items()]
    items.append((names.globals_features_key(1), spec.pack_globals(globals_state)))
    store.write(items)
    store.activate(1)
    return state


def drain(settings: Settings, topic: str, expected: int, uid: str, timeout: float = 60.0) -> list[bytes]:
    consumer = Consumer(consumer_config(settings.kafka, f"test-drain-{uid}-{topic}"))
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < expected and time.monotonic() < deadline:
            values += [m.value() for m in consumer.consume(500, 0.5) if m.error() is None]
        values += [m.value() for m in consumer.consume(500, 2.0) if m.error() is None]  # anything extra?
    finally:
        consumer.close()
    return values
