"""The online state's storage formats: the packed msgpack blobs of users, movies and the globals in Redis (checked
against :mod:`streamml.bounds` when read, since Redis is an input like any other) and the snapshot rows the Spark job
writes. The states themselves and the features computed from them are :mod:`.spec`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgpack

from streamml.bounds import MAX_COUNT, MAX_FEATURE_MAGNITUDE, MAX_TIMESTAMP
from streamml.errors import DataValidationError
from streamml.features.spec import N_GENRES, N_RECENT, FeatureState, GlobalState, MovieState, UserState

STATE_FORMAT = 2
"""Version of the packed user/movie/global blobs; bump it when their layout changes."""


# Packed blobs (Redis values). Genre sums are stored sparsely: [[genre, count, total], ...] for touched genres.


def pack_user(state: UserState) -> bytes:
    """Compact msgpack blob of a user's state."""
    genres = [
        [
            g,
            state.genre_count[g],
            state.genre_total[g],
            state.genre_residual_recent[g],
            state.genre_residual_total[g],
            state.genre_like_recent[g],
        ]
        for g in range(N_GENRES)
        if state.genre_count[g]
    ]
    payload = [
        STATE_FORMAT,
        state.count,
        state.total,
        state.total_sq,
        state.likes,
        state.last_ts,
        genres,
        state.residual_total,
        state.last_rating,
        state.recent,
        [state.half_stars, state.five_stars, state.low_ratings],
        [state.residual_sq_total, state.residual_sq_recent, state.line_x, state.line_xx, state.line_xy, state.line_y],
        state.first_ts,
    ]
    return bytes(msgpack.packb(payload, use_bin_type=True))


def unpack_user(blob: bytes) -> UserState:
    """Inverse of :func:`pack_user`; raises :class:`DataValidationError` on a malformed or out-of-bounds blob."""
    payload = _unpack(blob, "user")
    try:
        _, count, total, total_sq, likes, last_ts, genres, residual_total, last_rating, recent, stars, sums, first = (
            payload
        )
        if len(recent) != N_RECENT or len(stars) != 3 or len(sums) != 6:
            raise ValueError(f"{len(recent)} moving averages, {len(stars)} star counts, {len(sums)} sums")
        half, five, low = (_count(value) for value in stars)
        sq_total, sq_recent, line_x, line_xx, line_xy, line_y = _sums(sums)
        if min(sq_total, sq_recent, line_xx) < 0.0:
            raise ValueError(f"a sum of squares is negative: {sq_total}, {sq_recent}, {line_xx}")
        state = UserState(
            _count(count),
            _sum(total),
            _sum(total_sq),
            _count(likes),
            None if last_ts is None else _time(last_ts),
            residual_total=_sum(residual_total),
            last_rating=None if last_rating is None else _sum(last_rating),
            recent=_sums(recent),
            half_stars=half,
            five_stars=five,
            low_ratings=low,
            residual_sq_total=sq_total,
            residual_sq_recent=sq_recent,
            first_ts=None if first is None else _time(first),
            line_x=line_x,
            line_xx=line_xx,
            line_xy=line_xy,
            line_y=line_y,
        )
        for genre, genre_count, *sums_of_genre in genres:
            index = _genre(genre)
            state.genre_count[index] = _count(genre_count)
            (
                state.genre_total[index],
                state.genre_residual_recent[index],
                state.genre_residual_total[index],
                state.genre_like_recent[index],
            ) = _sums(sums_of_genre)
    except (TypeError, ValueError, IndexError) as exc:
        raise DataValidationError(f"user state blob: malformed ({exc})") from exc
    if state.likes > state.count or max(state.half_stars, state.five_stars, state.low_ratings) > state.count:
        raise DataValidationError("user state blob: more likes or star counts than ratings")
    return state


# Bounds of the values in a blob: a blob is read from Redis, so it is checked like any other input.
def _int_in(value: Any, low: int, high: int, what: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{what} {value!r} is not an int in {low}..{high}")
    return value


def _count(value: Any) -> int:
    return _int_in(value, 0, MAX_COUNT, "count")


def _time(value: Any) -> int:
    return _int_in(value, 0, MAX_TIMESTAMP, "timestamp")


def _genre(value: Any) -> int:
    return _int_in(value, 0, N_GENRES - 1, "genre index")


def _sum(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or abs(value) > MAX_FEATURE_MAGNITUDE:
        raise ValueError(f"sum {value!r} is not a finite number within +-{MAX_FEATURE_MAGNITUDE:g}")
    return float(value)


def _sums(values: Any) -> list[float]:
    """:func:`_sum` over a list, in bulk (the hot path reads a blob per touched user and movie)."""
    if type(values) is not list:
        raise ValueError(f"{values!r:.80} is not a list of numbers")
    floats = []
    for value in values:
        kind = type(value)
        if kind is not float and kind is not int:
            raise ValueError(f"{value!r:.40} is not a number")
        if not -MAX_FEATURE_MAGNITUDE <= value <= MAX_FEATURE_MAGNITUDE:  # False for NaN too
            raise ValueError(f"sum {value!r} is not a finite number within +-{MAX_FEATURE_MAGNITUDE:g}")
        floats.append(float(value))
    return floats


def _genres(values: Any) -> tuple[int, ...]:
    """A movie's genre list: distinct genre indices in increasing order (the order :func:`pack_movie` writes; a
    repeated genre would count twice in the scalar definition and once in the vectorised one)."""
    if type(values) is not list:
        raise ValueError(f"genres {values!r:.80} are not a list")
    previous = -1
    for genre in values:
        if type(genre) is not int or not 0 <= genre < N_GENRES:
            raise ValueError(f"genre index {genre!r:.40} is not an int in 0..{N_GENRES - 1}")
        if genre <= previous:
            raise DataValidationError(f"movie state blob: genres {values!r:.80} are not distinct and sorted")
        previous = genre
    return tuple(values)


def pack_movie(state: MovieState) -> bytes:
    """Compact msgpack blob of a movie's state (metadata included)."""
    payload = [
        STATE_FORMAT,
        list(state.genres),
        state.year,
        state.count,
        state.total,
        state.total_sq,
        state.likes,
        state.residual_total,
        state.first_ts,
    ]
    return bytes(msgpack.packb(payload, use_bin_type=True))


def unpack_movie(blob: bytes) -> MovieState:
    """Inverse of :func:`pack_movie`; raises :class:`DataValidationError` on a malformed or out-of-bounds blob."""
    payload = _unpack(blob, "movie")
    try:
        _, genres, year, count, total, total_sq, likes, residual_total, first = payload
        total, total_sq, residual_total = _sums([total, total_sq, residual_total])
        state = MovieState(
            _genres(genres),
            None if year is None else _int_in(year, 0, 9999, "year"),
            _count(count),
            total,
            total_sq,
            _count(likes),
            residual_total,
            None if first is None else _time(first),
        )
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"movie state blob: malformed ({exc})") from exc
    return state


def pack_globals(state: GlobalState) -> bytes:
    """Compact msgpack blob of the global sums."""
    return bytes(msgpack.packb([STATE_FORMAT, state.count, state.total, state.likes], use_bin_type=True))


def unpack_globals(blob: bytes) -> GlobalState:
    """Inverse of :func:`pack_globals`."""
    payload = _unpack(blob, "globals")
    try:
        _, count, total, likes = payload
        state = GlobalState(_count(count), _sum(total), _count(likes))
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"globals state blob: malformed ({exc})") from exc
    return state


def _unpack(blob: bytes, kind: str) -> list[Any]:
    try:
        payload = msgpack.unpackb(blob, raw=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        raise DataValidationError(f"{kind} state blob: not msgpack ({exc})") from exc
    if not isinstance(payload, list) or not payload:
        raise DataValidationError(f"{kind} state blob: expected a non-empty list, got {type(payload).__name__}")
    if payload[0] != STATE_FORMAT:
        raise DataValidationError(f"{kind} state blob: format {payload[0]!r}, this code reads {STATE_FORMAT}")
    return payload


# Snapshot rows (as produced by the Spark snapshot transforms) -> states.

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


def snapshot(state: FeatureState) -> tuple[dict[int, bytes], dict[int, bytes], GlobalState]:
    """The online snapshot of ``state``: packed blobs per user and per movie, and the global sums."""
    users = {user_id: pack_user(user) for user_id, user in state.users.items()}
    movies = {movie_id: pack_movie(movie) for movie_id, movie in state.movies.items()}
    return users, movies, GlobalState(state.globals.count, state.globals.total, state.globals.likes)
