"""Shared set-up for streaming tests: ml-latest-small's history snapshot loaded as feature version 1 into a Redis
database of the test's own, and the offline state to compare with."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import redis

from streamml import names
from streamml.data import movielens
from streamml.features import spec
from streamml.stores.features import RedisFeatureStore


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
