"""The snapshot rows the feature job writes (the ``users`` and ``movies`` parts and the manifest's globals): their
columns, their Spark types, and the states they hold. :mod:`.packing` turns states into the online layouts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamml.features.spec import GlobalState, MovieState, UserState

USER_STATE_SCHEMA: dict[str, str] = {
    "count": "long",
    "total": "double",
    "total_sq": "double",
    "likes": "long",
    "last_ts": "long",
    "genre_count": "array<long>",
    "genre_total": "array<double>",
    "residual_total": "double",
    "last_rating": "double",
    "recent": "array<double>",
    "genre_residual_recent": "array<double>",
    "genre_residual_total": "array<double>",
    "genre_like_recent": "array<double>",
    "half_stars": "long",
    "five_stars": "long",
    "low_ratings": "long",
    "residual_sq_total": "double",
    "residual_sq_recent": "double",
    "first_ts": "long",
    "line_x": "double",
    "line_xx": "double",
    "line_xy": "double",
    "line_y": "double",
}
"""A user's state as snapshot columns and their Spark types (the feature job's replay writes them); each is the
:class:`~streamml.features.spec.UserState` field of that name."""
SEQUENTIAL_MOVIE_COLUMNS: tuple[str, ...] = ("residual_total", "first_ts")
"""The movie state the replay adds to Spark's sums."""
USER_SNAPSHOT_COLUMNS: tuple[str, ...] = ("userId", *USER_STATE_SCHEMA)
MOVIE_SNAPSHOT_COLUMNS: tuple[str, ...] = (
    "movieId",
    "genres",
    "year",
    "count",
    "total",
    "total_sq",
    "likes",
    *SEQUENTIAL_MOVIE_COLUMNS,
)
GLOBAL_SNAPSHOT_COLUMNS: tuple[str, ...] = ("count", "total", "likes")


def user_state_from_row(row: Mapping[str, Any]) -> UserState:
    """A :class:`UserState` from a mapping with :data:`USER_SNAPSHOT_COLUMNS` (e.g. ``Row.asDict()``)."""
    return UserState(
        count=int(row["count"]),
        total=float(row["total"]),
        total_sq=float(row["total_sq"]),
        likes=int(row["likes"]),
        last_ts=None if row["last_ts"] is None else int(row["last_ts"]),
        genre_count=[int(value) for value in row["genre_count"]],
        genre_total=[float(value) for value in row["genre_total"]],
        residual_total=float(row["residual_total"]),
        last_rating=None if row["last_rating"] is None else float(row["last_rating"]),
        recent=[float(value) for value in row["recent"]],
        genre_residual_recent=[float(value) for value in row["genre_residual_recent"]],
        genre_residual_total=[float(value) for value in row["genre_residual_total"]],
        genre_like_recent=[float(value) for value in row["genre_like_recent"]],
        half_stars=int(row["half_stars"]),
        five_stars=int(row["five_stars"]),
        low_ratings=int(row["low_ratings"]),
        residual_sq_total=float(row["residual_sq_total"]),
        residual_sq_recent=float(row["residual_sq_recent"]),
        first_ts=None if row["first_ts"] is None else int(row["first_ts"]),
        line_x=float(row["line_x"]),
        line_xx=float(row["line_xx"]),
        line_xy=float(row["line_xy"]),
        line_y=float(row["line_y"]),
    )


def movie_state_from_row(row: Mapping[str, Any]) -> MovieState:
    """A :class:`MovieState` from a mapping with :data:`MOVIE_SNAPSHOT_COLUMNS`."""
    return MovieState(
        genres=tuple(int(value) for value in (row["genres"] or ())),
        year=None if row["year"] is None else int(row["year"]),
        count=int(row["count"] or 0),
        total=float(row["total"] or 0.0),
        total_sq=float(row["total_sq"] or 0.0),
        likes=int(row["likes"] or 0),
        residual_total=float(row["residual_total"] or 0.0),
        first_ts=None if row["first_ts"] is None else int(row["first_ts"]),
    )


def globals_from_row(row: Mapping[str, Any]) -> GlobalState:
    """A :class:`GlobalState` from a mapping with :data:`GLOBAL_SNAPSHOT_COLUMNS`."""
    return GlobalState(count=int(row["count"] or 0), total=float(row["total"] or 0.0), likes=int(row["likes"] or 0))
