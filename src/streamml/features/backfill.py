"""The offline features, computed where the data is: every user's ratings replayed through the streaming code.

The sequential families (:data:`streamml.features.spec.SEQUENTIAL_FEATURES`) depend on the order ratings are
applied in (timestamp, userId, movieId), so no window expresses them. What couples one user's replay to the others
is only a handful of sums: a rating's residuals are taken against its movie's and the global counts and sums just
before it is applied, and a feature row reads its movie's sums, residual total and first rating and the global sums
strictly before the rating's second. Spark computes those per rating with windows
(:func:`streamml.features.spark.replay_inputs`; sums of ratings are multiples of 0.5 and exact in any order, and a
movie's residual total is a running sum in replay order, the same left fold as the updater's). This module is the
other half, run by Spark's Python workers over partitions sorted by (userId, timestamp, movieId): it rebuilds those
movie and global states row by row and runs the updater's own :func:`~streamml.features.spec.features_from_states`
and :func:`~streamml.features.spec.apply_rating` on the user's state, so every feature of every row, and the user's
state as of the cutoff, is the streaming definition's. Nothing passes through the driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from streamml.features import packing, spec

KEY_COLUMNS: tuple[str, ...] = ("userId", "movieId", "rating", "timestamp")
"""Columns of a ratings frame, passed through to the features frame ahead of ``label`` and the features."""
SNAPSHOT_PREFIX = "snapshot_"
"""Prefix of the user-state columns of a replayed row: set on each user's last history row, null on every other."""
RESIDUAL_AFTER = "movie_residual_after"
"""The movie's residual total just after the row is applied (the movie snapshot takes it at its last history row)."""

NONE = -1
"""``year`` and ``m_first`` of a movie without one (both are never negative otherwise)."""
MOVIE_AT = ("m_count", "m_total", "m_total_sq", "m_likes", "m_residual", "m_first")
"""The movie's state strictly before the rating's second."""
GLOBAL_AT = ("g_count", "g_total", "g_likes")
"""The global sums strictly before the rating's second."""
MOVIE_BEFORE = ("ma_count", "ma_total", "ma_likes")
"""The movie's sums just before the rating is applied (ratings earlier in replay order)."""
GLOBAL_BEFORE = ("ga_count", "ga_total", "ga_likes")
"""The global sums just before the rating is applied."""
INPUT_COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS,
    "genres",
    "year",
    *MOVIE_AT,
    *GLOBAL_AT,
    *MOVIE_BEFORE,
    *GLOBAL_BEFORE,
    RESIDUAL_AFTER,
)
"""What :func:`replay` reads from each row (:func:`streamml.features.spark.replay_inputs` writes it)."""


def output_schema() -> str:
    """The Spark schema of :func:`replay`'s rows."""
    features = ", ".join(f"{name} double" for name in spec.FEATURE_NAMES)
    snapshot = ", ".join(f"{SNAPSHOT_PREFIX}{name} {kind}" for name, kind in packing.USER_STATE_SCHEMA.items())
    return (
        f"userId long, movieId long, rating double, timestamp long, {spec.LABEL} int, {features}, "
        f"{RESIDUAL_AFTER} double, {snapshot}"
    )


def replay(batches: Iterator[pd.DataFrame], cutoff: int) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` body: one partition's rows (:data:`INPUT_COLUMNS`), every user's rows together and sorted by
    (timestamp, movieId), in; their features, label and the user snapshots as of ``cutoff`` out.

    A user's rows may span Arrow batches: the last (user, second) of each batch waits for the next one, so a second's
    ratings are always featurised together before any of them is applied, and the row after each chunk is known.
    """
    users = _UserReplay(cutoff)
    carry: pd.DataFrame | None = None
    for batch in batches:
        if carry is not None:
            batch = pd.concat([carry, batch], ignore_index=True)
        user_ids = batch["userId"].to_numpy()
        seconds = batch["timestamp"].to_numpy()
        earlier = np.flatnonzero((user_ids != user_ids[-1]) | (seconds != seconds[-1]))
        if not len(earlier):  # one (user, second) fills the batch
            carry = batch
            continue
        split = int(earlier[-1]) + 1
        carry = batch.iloc[split:].reset_index(drop=True)
        yield users.run(batch.iloc[:split], (int(user_ids[split]), int(seconds[split])))
    if carry is not None and len(carry):
        yield users.run(carry, None)


def _or_none(value: int) -> int | None:
    return None if value == NONE else value


class _UserReplay:
    """The replay state of one partition: the current user's :class:`~streamml.features.spec.UserState` and the
    catalog fields of the movies seen so far."""

    def __init__(self, cutoff: int) -> None:
        self.cutoff = cutoff
        self.user_id: int | None = None
        self.user = spec.UserState()
        self.catalog: dict[int, tuple[tuple[int, ...], int | None]] = {}

    def _movie_meta(self, movie_id: int, genres: Any, year: int) -> tuple[tuple[int, ...], int | None]:
        meta = self.catalog.get(movie_id)
        if meta is None:
            meta = self.catalog[movie_id] = (tuple(int(g) for g in genres), _or_none(year))
        return meta

    def run(self, chunk: pd.DataFrame, after: tuple[int, int] | None) -> pd.DataFrame:
        """Features of ``chunk`` (whole seconds of whole or continued users); ``after`` is the (user, second) of
        the row that follows it, None at the end of the partition."""
        size = len(chunk)
        col = {name: chunk[name].tolist() for name in INPUT_COLUMNS}
        user_ids, movie_ids, ratings, seconds = col["userId"], col["movieId"], col["rating"], col["timestamp"]
        out = np.empty((size, spec.N_FEATURES), dtype=np.float64)
        snapshots: list[dict[str, Any] | None] = [None] * size
        movie, before = spec.MovieState(), spec.MovieState()
        at, prior = spec.GlobalState(), spec.GlobalState()
        start = 0
        while start < size:
            user_id, ts = user_ids[start], seconds[start]
            if user_id != self.user_id:
                self.user_id, self.user = user_id, spec.UserState()
            end = start + 1
            while end < size and user_ids[end] == user_id and seconds[end] == ts:
                end += 1
            metas = [self._movie_meta(movie_ids[r], col["genres"][r], col["year"][r]) for r in range(start, end)]
            for row, (genres, year) in zip(range(start, end), metas, strict=True):
                movie.genres, movie.year = genres, year
                movie.count, movie.total, movie.total_sq = (
                    col["m_count"][row],
                    col["m_total"][row],
                    col["m_total_sq"][row],
                )
                movie.likes, movie.residual_total = col["m_likes"][row], col["m_residual"][row]
                movie.first_ts = _or_none(col["m_first"][row])
                at.count, at.total, at.likes = col["g_count"][row], col["g_total"][row], col["g_likes"][row]
                out[row] = spec.features_from_states(self.user, movie, at, ts)[0]
            for row, (genres, _) in zip(range(start, end), metas, strict=True):
                before.genres = genres
                before.count, before.total, before.likes = (
                    col["ma_count"][row],
                    col["ma_total"][row],
                    col["ma_likes"][row],
                )
                prior.count, prior.total, prior.likes = col["ga_count"][row], col["ga_total"][row], col["ga_likes"][row]
                spec.apply_rating(self.user, before, prior, ratings[row], ts)
            following = (user_ids[end], seconds[end]) if end < size else after
            if ts < self.cutoff and (following is None or following[0] != user_id or following[1] >= self.cutoff):
                snapshots[end - 1] = {name: _copy(getattr(self.user, name)) for name in packing.USER_STATE_SCHEMA}
            start = end
        frame = chunk[list(KEY_COLUMNS)].reset_index(drop=True)
        frame[spec.LABEL] = (chunk["rating"].to_numpy() >= spec.LIKE_THRESHOLD).astype(np.int32)
        features = pd.DataFrame(out, columns=list(spec.FEATURE_NAMES))
        frame = pd.concat([frame, features], axis=1)
        frame[RESIDUAL_AFTER] = chunk[RESIDUAL_AFTER].to_numpy()
        for name in packing.USER_STATE_SCHEMA:
            frame[SNAPSHOT_PREFIX + name] = [None if s is None else s[name] for s in snapshots]
        return frame


def _copy(value: Any) -> Any:
    # The replay goes on past the cutoff and updates the per-genre lists in place.
    return list(value) if isinstance(value, list) else value
