"""The offline side of the sequential feature families: the streaming definition replayed over history.

The residual and recency families (:data:`streamml.features.spec.SEQUENTIAL_FEATURES`) depend on the order in which
ratings are applied, so no Spark window expresses them. Offline they are computed by the very code the feature
updater runs per event (:meth:`~streamml.features.spec.FeatureState.point_in_time`, which calls
:func:`~streamml.features.spec.apply_rating`), over every rating in the replay order (timestamp, userId, movieId).
The feature job joins these columns to Spark's windowed aggregates on the rating id, and the sequential state at
the cutoff to Spark's snapshot, so the online store starts from exactly the state the updater would have reached.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from streamml.data.movielens import sort_ratings
from streamml.features import packing, spec

logger = logging.getLogger(__name__)

RATING_KEY: tuple[str, ...] = ("userId", "movieId", "timestamp")
"""What identifies a rating row (the rating id of the streaming side)."""
_COLUMNS = [spec.FEATURE_NAMES.index(name) for name in spec.SEQUENTIAL_FEATURES]


@dataclass(frozen=True)
class Backfill:
    """The sequential families of every rating, and their state as of the cutoff (history only)."""

    rows: pd.DataFrame
    """:data:`RATING_KEY` then :data:`~streamml.features.spec.SEQUENTIAL_FEATURES`, one row per rating."""
    users: pd.DataFrame
    """``userId`` then :data:`~streamml.features.packing.SEQUENTIAL_USER_COLUMNS`, one row per user in history."""
    movies: pd.DataFrame
    """``movieId`` then :data:`~streamml.features.packing.SEQUENTIAL_MOVIE_COLUMNS`, one row per movie known at the
    cutoff (catalog or rated)."""


def _copy(value: Any) -> Any:
    # The replay goes on past the cutoff and updates the per-genre lists in place.
    return list(value) if isinstance(value, list) else value


def backfill(ratings: pd.DataFrame, movies: pd.DataFrame, cutoff: int) -> Backfill:
    """Replay ``ratings`` (``userId, movieId, rating, timestamp``) with the catalog ``movies``; the snapshot is taken
    after every rating with ``timestamp < cutoff``."""
    started = time.perf_counter()
    ordered = sort_ratings(ratings[["userId", "movieId", "rating", "timestamp"]])
    split = int(np.searchsorted(ordered["timestamp"].to_numpy(), cutoff, side="left"))
    state = spec.FeatureState.from_movies(movies)
    history = spec.point_in_time_features(state, ordered.iloc[:split])
    users = pd.DataFrame(
        [
            (user_id, *(_copy(getattr(user, name)) for name in packing.SEQUENTIAL_USER_COLUMNS))
            for user_id, user in state.users.items()
        ],
        columns=["userId", *packing.SEQUENTIAL_USER_COLUMNS],
    )
    movie_rows = pd.DataFrame(
        [
            (movie_id, *(getattr(movie, name) for name in packing.SEQUENTIAL_MOVIE_COLUMNS))
            for movie_id, movie in state.movies.items()
        ],
        columns=["movieId", *packing.SEQUENTIAL_MOVIE_COLUMNS],
    )
    stream = spec.point_in_time_features(state, ordered.iloc[split:])
    features = np.vstack([history, stream])[:, _COLUMNS]
    rows = ordered[list(RATING_KEY)].copy()
    rows[list(spec.SEQUENTIAL_FEATURES)] = features
    seconds = time.perf_counter() - started
    logger.info(
        "backfill ratings=%d users=%d movies=%d seconds=%.1f (%.0f ratings/s)",
        len(rows),
        len(users),
        len(movie_rows),
        seconds,
        len(rows) / max(seconds, 1e-9),
    )
    return Backfill(rows=rows, users=users, movies=movie_rows)
