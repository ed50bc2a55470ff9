"""The online state's storage formats: the fixed binary layouts of the user, movie and global states in Redis
(checked against :mod:`streamml.bounds` when read, since Redis is an input like any other). The snapshot rows the
Spark job writes are :mod:`.snapshot_rows`; the states themselves and the features computed from them :mod:`.spec`.

Layout (:data:`STATE_FORMAT` 3). Each state is one fixed-width little-endian record of a numpy structured dtype
(:data:`USER_LAYOUT`, :data:`MOVIE_LAYOUT`, :data:`GLOBALS_LAYOUT`): the format number (``uint16``), then the
fields of :class:`~streamml.features.spec.UserState` (``MovieState``, ``GlobalState``) in their order, integers as
``int64`` and sums as ``float64`` (the movie's genre mask and year excepted), the per-genre lists as ``N_GENRES``
values each. An absent time is -1, an absent last rating NaN; a movie's genres are a bit mask (bit ``g`` for genre
index ``g``), its absent year -1. So a batch of blobs decodes with one ``numpy.frombuffer`` over their
concatenation (:func:`decode_users`), is checked column by column, and
:func:`~streamml.features.spec.feature_columns_matrix` computes the batch's features from the columns without a
Python object per row. Writers pack one state with ``struct`` (the same bytes) or whole columns with numpy. A user
record is 1,034 bytes whatever its history (format 2's msgpack stored only the touched genres: 136 bytes on average
for the synthetic million users, 860 for ml-latest-small's); the fixed width is what the one-call decode costs in
Redis memory (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from streamml.bounds import MAX_COUNT, MAX_FEATURE_MAGNITUDE, MAX_TIMESTAMP
from streamml.errors import DataValidationError
from streamml.features.spec import N_GENRES, N_RECENT, FeatureState, GlobalState, MovieState, UserState, genre_mask

STATE_FORMAT = 3
"""Version of the user/movie/global layouts; bump it when a layout changes (format 2 was msgpack)."""
MAX_YEAR = 9999

_GENRE_LISTS = ("genre_count", "genre_total", "genre_residual_recent", "genre_residual_total", "genre_like_recent")
USER_LAYOUT = np.dtype(
    [
        ("format", "<u2"),
        ("count", "<i8"),
        ("total", "<f8"),
        ("total_sq", "<f8"),
        ("likes", "<i8"),
        ("last_ts", "<i8"),
        ("genre_count", "<i8", (N_GENRES,)),
        ("genre_total", "<f8", (N_GENRES,)),
        ("residual_total", "<f8"),
        ("last_rating", "<f8"),
        ("recent", "<f8", (N_RECENT,)),
        ("genre_residual_recent", "<f8", (N_GENRES,)),
        ("genre_residual_total", "<f8", (N_GENRES,)),
        ("genre_like_recent", "<f8", (N_GENRES,)),
        ("half_stars", "<i8"),
        ("five_stars", "<i8"),
        ("low_ratings", "<i8"),
        ("residual_sq_total", "<f8"),
        ("residual_sq_recent", "<f8"),
        ("first_ts", "<i8"),
        ("line_x", "<f8"),
        ("line_xx", "<f8"),
        ("line_xy", "<f8"),
        ("line_y", "<f8"),
    ]
)
"""One user's state: the fields of :class:`UserState` in order, after the format."""
MOVIE_LAYOUT = np.dtype(
    [
        ("format", "<u2"),
        ("genres", "<u4"),
        ("year", "<i4"),
        ("count", "<i8"),
        ("total", "<f8"),
        ("total_sq", "<f8"),
        ("likes", "<i8"),
        ("residual_total", "<f8"),
        ("first_ts", "<i8"),
    ]
)
"""One movie's state: the fields of :class:`MovieState` in order, genres as a bit mask."""
GLOBALS_LAYOUT = np.dtype([("format", "<u2"), ("count", "<i8"), ("total", "<f8"), ("likes", "<i8")])
"""The global sums."""


def fields_of(layout: np.dtype) -> tuple[str, ...]:
    """The state fields of a layout (every field but the format)."""
    return tuple(layout.names or ())[1:]


_COUNTS = {
    USER_LAYOUT: ("count", "likes", "genre_count", "half_stars", "five_stars", "low_ratings"),
    MOVIE_LAYOUT: ("count", "likes"),
    GLOBALS_LAYOUT: ("count", "likes"),
}
_TIMES = {USER_LAYOUT: ("last_ts", "first_ts"), MOVIE_LAYOUT: ("first_ts",), GLOBALS_LAYOUT: ()}
_NOT_NEGATIVE = ("residual_sq_total", "residual_sq_recent", "line_xx")
_BITS = np.arange(N_GENRES, dtype=np.uint32)


@dataclass(frozen=True)
class Decoded:
    """A batch of blobs decoded: one record per blob (the empty state's where there is none or it is refused) and,
    by position, why each refused blob cannot be read."""

    records: np.ndarray
    errors: dict[int, str]


# Encoding.


def _struct(layout: np.dtype) -> struct.Struct:
    """The :mod:`struct` format of a layout (the same bytes as its numpy records: packed, little-endian)."""
    codes = {"u2": "H", "u4": "I", "i4": "i", "i8": "q", "f8": "d"}
    spec_ = "".join(f"{math.prod(layout[name].shape)}{codes[layout[name].base.str[1:]]}" for name in layout.names or ())
    packer = struct.Struct("<" + spec_)
    if packer.size != layout.itemsize:  # a layout with padding would not be the bytes numpy reads
        raise TypeError(f"struct format of {layout} has {packer.size} bytes, its records {layout.itemsize}")
    return packer


_USER_STRUCT, _MOVIE_STRUCT = _struct(USER_LAYOUT), _struct(MOVIE_LAYOUT)


def _time_or_absent(value: int | None) -> int:
    return -1 if value is None else value


def pack_user(s: UserState) -> bytes:
    """A user state as a :data:`USER_LAYOUT` record (one ``struct.pack``: the updater packs each state it changes)."""
    return _USER_STRUCT.pack(
        STATE_FORMAT, s.count, s.total, s.total_sq, s.likes, _time_or_absent(s.last_ts), *s.genre_count,
        *s.genre_total, s.residual_total, math.nan if s.last_rating is None else s.last_rating, *s.recent,
        *s.genre_residual_recent, *s.genre_residual_total, *s.genre_like_recent, s.half_stars, s.five_stars,
        s.low_ratings, s.residual_sq_total, s.residual_sq_recent, _time_or_absent(s.first_ts), s.line_x, s.line_xx,
        s.line_xy, s.line_y,
    )  # fmt: skip


def pack_movie(s: MovieState) -> bytes:
    """A movie state as a :data:`MOVIE_LAYOUT` record."""
    return _MOVIE_STRUCT.pack(
        STATE_FORMAT, genre_mask(s.genres), -1 if s.year is None else s.year, s.count, s.total, s.total_sq, s.likes,
        s.residual_total, _time_or_absent(s.first_ts),
    )  # fmt: skip


def pack_users(states: Sequence[UserState]) -> list[bytes]:
    return [pack_user(s) for s in states]


def pack_movies(states: Sequence[MovieState]) -> list[bytes]:
    return [pack_movie(s) for s in states]


def pack_globals(state: GlobalState) -> bytes:
    """The global sums as a :data:`GLOBALS_LAYOUT` record."""
    return np.array([(STATE_FORMAT, state.count, state.total, state.likes)], dtype=GLOBALS_LAYOUT).tobytes()


def _split(records: np.ndarray) -> list[bytes]:
    """Each record of a structured array as its own bytes."""
    data, size = records.tobytes(), records.dtype.itemsize
    return [data[start : start + size] for start in range(0, len(data), size)]


def pack_columns(layout: np.dtype, columns: Mapping[str, np.ndarray], kind: str, first_row: int = 0) -> list[bytes]:
    """Records of ``layout`` filled column by column, one per row, every value checked as a read checks it:
    a snapshot's states packed with no object per row. ``columns`` holds every field but the format, in the layout's
    encoding (-1 for an absent time or year, NaN for an absent last rating, genres as a mask, per-genre lists as
    (rows, N_GENRES) arrays). Raises :class:`DataValidationError` naming the first row out of bounds (counted from
    ``first_row``)."""
    rows = len(columns["count"])
    records = np.zeros(rows, dtype=layout)
    records["format"] = STATE_FORMAT
    for name in fields_of(layout):
        records[name] = columns[name]
    bad = _invalid(records, layout)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataValidationError(f"row {first_row + row}: {kind} state {_reason(records[row], layout)}")
    return _split(records)


def genre_masks(rows: int, parents: np.ndarray, genres: np.ndarray, first_row: int = 0) -> np.ndarray:
    """The genre masks of ``rows`` movies from their genre indices ``genres``, ``parents[k]`` the row of
    ``genres[k]`` (Arrow's ``list_parent_indices`` and ``list_flatten``)."""
    out = (genres < 0) | (genres >= N_GENRES)
    if out.any():
        k = int(np.flatnonzero(out)[0])
        raise DataValidationError(f"row {first_row + parents[k]}: genre index {genres[k]} is not in 0..{N_GENRES - 1}")
    masks = np.zeros(rows, dtype=np.uint32)
    np.bitwise_or.at(masks, parents, np.left_shift(np.uint32(1), genres.astype(np.uint32)))
    return masks


_EMPTY = {
    USER_LAYOUT: np.frombuffer(pack_user(UserState()), dtype=USER_LAYOUT),
    MOVIE_LAYOUT: np.frombuffer(pack_movie(MovieState()), dtype=MOVIE_LAYOUT),
    GLOBALS_LAYOUT: np.frombuffer(pack_globals(GlobalState()), dtype=GLOBALS_LAYOUT),
}


# Decoding: a batch at a time, every value checked.


def decode_users(blobs: Sequence[bytes | None]) -> Decoded:
    """The :data:`USER_LAYOUT` records of ``blobs`` (None: no state yet, the empty one), each checked."""
    return _decode(blobs, USER_LAYOUT, "user")


def decode_movies(blobs: Sequence[bytes | None]) -> Decoded:
    """The :data:`MOVIE_LAYOUT` records of ``blobs``, each checked."""
    return _decode(blobs, MOVIE_LAYOUT, "movie")


def _decode(blobs: Sequence[bytes | None], layout: np.dtype, kind: str) -> Decoded:
    empty = _EMPTY[layout].tobytes()
    size = layout.itemsize
    errors: dict[int, str] = {}
    parts: list[bytes] = []
    for i, blob in enumerate(blobs):
        if blob is None:
            parts.append(empty)
        elif len(blob) != size:
            errors[i] = (
                f"{kind} state blob: {len(blob)} bytes, not the {size} of state format {STATE_FORMAT} "
                "(a blob of another format: materialize the feature version again)"
            )
            parts.append(empty)
        else:
            parts.append(blob)
    records = np.frombuffer(b"".join(parts), dtype=layout)
    bad = _invalid(records, layout)
    if bad.any():
        errors.update({int(i): f"{kind} state blob: {_reason(records[i], layout)}" for i in np.flatnonzero(bad)})
        records = records.copy()
        records[bad] = _EMPTY[layout]
    return Decoded(records, errors)


def _flat(records: np.ndarray, name: str) -> np.ndarray:
    values = records[name]
    return values if values.ndim == 2 else values[:, None]


def _checks(records: np.ndarray, layout: np.dtype) -> Iterable[tuple[np.ndarray, Any]]:
    """(rows that break a rule, the rule's words for a row) for each rule, in the order a reason names them."""
    yield records["format"] != STATE_FORMAT, lambda r: f"format {r['format']}, this code reads {STATE_FORMAT}"
    for name in _COUNTS[layout]:
        values = _flat(records, name)
        broken = np.asarray(((values < 0) | (values > MAX_COUNT)).any(axis=1))
        yield broken, lambda r, n=name: f"{n} {r[n]} is not in 0..2**53"
    for name in _TIMES[layout]:
        values = records[name]
        yield (values < -1) | (values > MAX_TIMESTAMP), lambda r, n=name: f"{n} {r[n]} is not a unix time or -1"
    for name in fields_of(layout):
        if layout[name].base.kind != "f":
            continue
        values = _flat(records, name)
        out = ~(np.abs(values) <= MAX_FEATURE_MAGNITUDE)  # NaN too
        if name == "last_rating":
            out &= ~np.isnan(values)  # NaN: no rating yet
        yield out.any(axis=1), lambda r, n=name: f"{n} {r[n]} is not finite within +-{MAX_FEATURE_MAGNITUDE:g}"
    for name in _NOT_NEGATIVE if layout == USER_LAYOUT else ():
        yield records[name] < 0.0, lambda r, n=name: f"the sum of squares {n} {r[n]} is negative"
    if layout == USER_LAYOUT:
        most = np.maximum.reduce([records[name] for name in ("likes", "half_stars", "five_stars", "low_ratings")])
        yield most > records["count"], lambda _: "more likes or star counts than ratings"
    if layout == MOVIE_LAYOUT:
        yield records["genres"] >> N_GENRES != 0, lambda r: f"genre mask {r['genres']:#x} has bits past {N_GENRES}"
        year = records["year"]
        yield (year < -1) | (year > MAX_YEAR), lambda r: f"year {r['year']} is not in 0..{MAX_YEAR} or -1"
        yield records["likes"] > records["count"], lambda _: "more likes than ratings"


def _invalid(records: np.ndarray, layout: np.dtype) -> np.ndarray:
    bad = np.zeros(len(records), dtype=bool)
    with np.errstate(invalid="ignore"):
        for broken, _ in _checks(records, layout):
            bad |= broken
    return bad


def _reason(record: np.ndarray, layout: np.dtype) -> str:
    with np.errstate(invalid="ignore"):
        for broken, words in _checks(record.reshape(1), layout):
            if broken[0]:
                return str(words(record))
    return "malformed"


def _absent(value: int) -> int | None:
    return None if value < 0 else value


def users_from_records(records: np.ndarray) -> list[UserState]:
    """The :class:`UserState` of each (checked) :data:`USER_LAYOUT` record."""
    columns = [records[name].tolist() for name in fields_of(USER_LAYOUT)]
    states = [UserState(*row) for row in zip(*columns, strict=True)]
    for state in states:
        state.last_ts, state.first_ts = _absent(state.last_ts), _absent(state.first_ts)  # type: ignore[arg-type]
        if state.last_rating != state.last_rating:  # NaN: no rating yet
            state.last_rating = None
    return states


def movies_from_records(records: np.ndarray) -> list[MovieState]:
    """The :class:`MovieState` of each (checked) :data:`MOVIE_LAYOUT` record."""
    return [
        MovieState(
            tuple(g for g in range(N_GENRES) if mask >> g & 1),
            _absent(year),
            count,
            total,
            total_sq,
            likes,
            residual_total,
            _absent(first),
        )  # fmt: skip
        for _, mask, year, count, total, total_sq, likes, residual_total, first in records.tolist()
    ]


def unpack_users(blobs: Sequence[bytes | None]) -> list[UserState | DataValidationError]:
    """Each blob's user state (the empty one for None), or why it cannot be read."""
    decoded = decode_users(blobs)
    return _or_errors(users_from_records(decoded.records), decoded.errors)


def unpack_movies(blobs: Sequence[bytes | None]) -> list[MovieState | DataValidationError]:
    """Each blob's movie state (the empty one for None), or why it cannot be read."""
    decoded = decode_movies(blobs)
    return _or_errors(movies_from_records(decoded.records), decoded.errors)


S = TypeVar("S")


def _or_errors(states: list[S], errors: Mapping[int, str]) -> list[S | DataValidationError]:
    """``states`` with the refused positions replaced by their errors."""
    out: list[S | DataValidationError] = list(states)
    for i, error in errors.items():
        out[i] = DataValidationError(error)
    return out


def _one(states: Sequence[Any]) -> Any:
    if isinstance(states[0], DataValidationError):
        raise states[0]
    return states[0]


def unpack_user(blob: bytes) -> UserState:
    """Inverse of :func:`pack_user`; raises :class:`DataValidationError` on a malformed or out-of-bounds blob."""
    return _one(unpack_users([blob]))


def unpack_movie(blob: bytes) -> MovieState:
    """Inverse of :func:`pack_movie`; raises :class:`DataValidationError` on a malformed or out-of-bounds blob."""
    return _one(unpack_movies([blob]))


def unpack_globals(blob: bytes) -> GlobalState:
    """Inverse of :func:`pack_globals`."""
    decoded = _decode([blob], GLOBALS_LAYOUT, "globals")
    if decoded.errors:
        raise DataValidationError(decoded.errors[0])
    _, count, total, likes = decoded.records.tolist()[0]
    return GlobalState(count, total, likes)


def snapshot(state: FeatureState) -> tuple[dict[int, bytes], dict[int, bytes], GlobalState]:
    """The online snapshot of ``state``: packed blobs per user and per movie, and the global sums."""
    users = {user_id: pack_user(user) for user_id, user in state.users.items()}
    movies = {movie_id: pack_movie(movie) for movie_id, movie in state.movies.items()}
    return users, movies, GlobalState(state.globals.count, state.globals.total, state.globals.likes)
