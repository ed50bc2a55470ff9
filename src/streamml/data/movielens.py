"""MovieLens CSVs: loading, validation, a synthetic stand-in and the time split.

Errors about the data are :class:`~streamml.errors.DataValidationError` whose message reads
``<file>: row <n>: <problem>``, where ``n`` is the 1-based data row of the CSV (the first line after the header
is row 1). For frames that did not come from :func:`load_ratings` / :func:`load_movies`, ``n`` is the index label
plus one when the index holds integers, else the position plus one.

The time split (see :func:`time_split`) is the honest split of the design: history is every rating strictly
before the cutoff timestamp, the stream is every rating at or after it.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streamml import names
from streamml.errors import DataValidationError
from streamml.features.spec import GENRES
from streamml.names import MOVIES_FILE, RATINGS_FILE

logger = logging.getLogger(__name__)

RATINGS_COLUMNS = ("userId", "movieId", "rating", "timestamp")
MOVIES_COLUMNS = ("movieId", "title", "genres")
RATING_MIN = 0.5
RATING_MAX = 5.0

_INTEGER_COLUMNS = ("userId", "movieId", "timestamp")
_SORT_KEYS = ["timestamp", "userId", "movieId"]
# pandas' C parser says "line N" (1-based file line, header included) or "row N" (0-based file line).
_PARSER_LINE = re.compile(r"\bline (\d+)")
_PARSER_ROW = re.compile(r"\brow (\d+)")


def load_ratings(directory: str | Path) -> pd.DataFrame:
    """Read ``ratings.csv`` from ``directory`` with int64 ids/timestamps and float64 ratings.

    Raises :class:`DataValidationError` for a missing or malformed file, missing columns, non-numeric or missing
    values. Range and cross-file checks are :func:`validate`'s job.
    """
    path = Path(directory) / RATINGS_FILE
    frame = _read_csv(path, RATINGS_COLUMNS)
    source = str(path)
    for column in RATINGS_COLUMNS:
        frame[column] = _numeric_column(frame, column, source, integer=column in _INTEGER_COLUMNS)
    frame.attrs["source"] = source
    return frame


def load_movies(directory: str | Path) -> pd.DataFrame:
    """Read ``movies.csv`` from ``directory`` with an int64 ``movieId`` and string ``title`` / ``genres``."""
    path = Path(directory) / MOVIES_FILE
    frame = _read_csv(path, MOVIES_COLUMNS, string_columns=("title", "genres"))
    source = str(path)
    frame["movieId"] = _numeric_column(frame, "movieId", source, integer=True)
    for column in ("title", "genres"):
        _raise_on_first(frame, frame[column].isna().to_numpy(), source, f"{column} is missing")
    frame.attrs["source"] = source
    return frame


def load(directory: str | Path, *, now: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load and :func:`validate` both files; return ``(ratings, movies)``."""
    ratings = load_ratings(directory)
    movies = load_movies(directory)
    validate(ratings, movies, now=now)
    logger.info("loaded MovieLens directory=%s ratings=%d movies=%d", directory, len(ratings), len(movies))
    return ratings, movies


def validate(ratings: pd.DataFrame, movies: pd.DataFrame, *, now: float | None = None) -> None:
    """Check both frames against the MovieLens schema; raise :class:`DataValidationError` at the first problem.

    Checks: required columns; integer ids and timestamps, numeric ratings, string titles and genres; no missing
    values; ratings in 0.5..5.0 in 0.5 steps; timestamps > 0 and not after ``now`` (default: the current time);
    unique movie ids in movies; every rated movie present in movies.
    """
    ratings_source = str(ratings.attrs.get("source", RATINGS_FILE))
    movies_source = str(movies.attrs.get("source", MOVIES_FILE))
    _require_columns(ratings, RATINGS_COLUMNS, ratings_source)
    _require_columns(movies, MOVIES_COLUMNS, movies_source)

    for column in RATINGS_COLUMNS:
        _check_numeric(ratings, column, ratings_source, integer=column in _INTEGER_COLUMNS)
    _check_numeric(movies, "movieId", movies_source, integer=True)
    for column in ("title", "genres"):
        values = movies[column]
        _raise_on_first(movies, values.isna().to_numpy(), movies_source, f"{column} is missing")
        not_text = ~values.map(lambda value: isinstance(value, str)).to_numpy(dtype=bool)
        _raise_on_first(movies, not_text, movies_source, f"{column} is not text", column)

    rating = ratings["rating"].to_numpy(dtype=np.float64)
    _raise_on_first(
        ratings,
        (rating < RATING_MIN) | (rating > RATING_MAX),
        ratings_source,
        f"rating out of range {RATING_MIN}..{RATING_MAX}",
        "rating",
    )
    doubled = rating * 2.0
    _raise_on_first(
        ratings, np.abs(doubled - np.round(doubled)) > 1e-9, ratings_source, "rating is not a multiple of 0.5", "rating"
    )

    timestamp = ratings["timestamp"].to_numpy(dtype=np.int64)
    _raise_on_first(ratings, timestamp <= 0, ratings_source, "timestamp is not positive", "timestamp")
    limit = time.time() if now is None else now
    _raise_on_first(ratings, timestamp > limit, ratings_source, "timestamp is in the future", "timestamp")

    movie_ids = movies["movieId"].to_numpy(dtype=np.int64)
    _raise_on_first(movies, pd.Series(movie_ids).duplicated().to_numpy(), movies_source, "duplicate movieId", "movieId")
    unknown = ~np.isin(ratings["movieId"].to_numpy(dtype=np.int64), movie_ids)
    _raise_on_first(ratings, unknown, ratings_source, f"movieId not found in {movies_source}", "movieId")


def synthesize(n_ratings: int, n_users: int, n_movies: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate a synthetic ``(ratings, movies)`` pair with MovieLens' schema and a realistic shape.

    User activity and movie popularity follow Zipf-like laws; ratings come from a global mean plus user and movie
    biases and a user-genre taste, rounded to 0.5 steps, so the like-rate varies by user and movie. Each user rates
    in sessions, and about a quarter of consecutive ratings in a session share a timestamp, as in MovieLens.
    (user, movie) pairs are unique. The same arguments always give the same frames.
    """
    if min(n_ratings, n_users, n_movies) <= 0:
        raise ValueError("n_ratings, n_users and n_movies must be positive")
    if n_ratings > n_users * n_movies:
        raise ValueError(f"cannot draw {n_ratings} unique (user, movie) pairs from {n_users}x{n_movies}")
    rng = np.random.default_rng(seed)
    movies, movie_genres = _synthetic_movies(rng, n_movies)

    popularity = _zipf_weights(rng, n_movies, exponent=0.9)
    activity = _zipf_weights(rng, n_users, exponent=0.8)
    per_user = _allocate(rng, n_ratings, activity, cap=n_movies)

    user_bias = rng.normal(0.0, 0.45, n_users)
    movie_bias = rng.normal(0.0, 0.5, n_movies) + 0.25 * (popularity / popularity.max())
    taste = rng.normal(0.0, 0.6, (n_users, len(GENRES)))
    n_genres = np.maximum(movie_genres.sum(axis=1), 1)

    start_lo, start_hi = 946_684_800, 1_514_764_800  # 2000-01-01 .. 2018-01-01
    users, items, stamps = [], [], []
    for user in np.flatnonzero(per_user):
        count = int(per_user[user])
        chosen = rng.choice(n_movies, size=count, replace=False, p=popularity)
        users.append(np.full(count, user))
        items.append(chosen)
        stamps.append(_session_timestamps(rng, count, int(rng.integers(start_lo, start_hi))))
    user_index = np.concatenate(users)
    movie_index = np.concatenate(items)
    affinity = (taste[user_index] * movie_genres[movie_index]).sum(axis=1) / n_genres[movie_index]
    score = 3.7 + user_bias[user_index] + movie_bias[movie_index] + affinity + rng.normal(0.0, 0.8, len(user_index))
    rating = np.clip(np.round(score * 2.0) / 2.0, RATING_MIN, RATING_MAX)

    movie_ids = movies["movieId"].to_numpy()
    ratings = pd.DataFrame(
        {
            "userId": (user_index + 1).astype(np.int64),
            "movieId": movie_ids[movie_index].astype(np.int64),
            "rating": rating.astype(np.float64),
            "timestamp": np.concatenate(stamps).astype(np.int64),
        }
    )
    ratings = ratings.sort_values(["userId", "movieId"], kind="stable").reset_index(drop=True)
    return ratings, movies


def cutoff_index(n_rows: int, quantile: float) -> int:
    """Position (0-based, in timestamp order) of the row whose timestamp is the split cutoff."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if n_rows <= 0:
        raise ValueError("cannot split an empty ratings frame")
    return min(int(quantile * n_rows), n_rows - 1)


def write_synthetic(
    out: Path, n_ratings: int, n_users: int | None = None, n_movies: int | None = None, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`synthesize` into ``out/ratings.csv`` and ``out/movies.csv``; by default ``n_ratings / 150`` users and
    ``n_ratings / 50`` movies (at least 10 and 100)."""
    frame, catalog = synthesize(
        n_ratings, n_users or max(10, n_ratings // 150), n_movies or max(100, n_ratings // 50), seed
    )
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / RATINGS_FILE, index=False)
    catalog.to_csv(out / MOVIES_FILE, index=False)
    return frame, catalog


def time_split(ratings: pd.DataFrame, quantile: float = names.SPLIT_QUANTILE) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Split ratings in time: ``(history, stream, cutoff_ts)``.

    ``cutoff_ts`` is the timestamp at position :func:`cutoff_index` of the sorted timestamps (the lower
    ``quantile``); history holds ``timestamp < cutoff_ts``, stream holds ``timestamp >= cutoff_ts``, so ratings
    sharing a timestamp always land on the same side. Both are sorted by (timestamp, userId, movieId) with a
    fresh index.
    """
    ordered = ratings.sort_values(_SORT_KEYS, kind="stable").reset_index(drop=True)
    timestamps = ordered["timestamp"].to_numpy()
    cutoff = int(timestamps[cutoff_index(len(ordered), quantile)])
    split = int(np.searchsorted(timestamps, cutoff, side="left"))
    history = ordered.iloc[:split].reset_index(drop=True)
    stream = ordered.iloc[split:].reset_index(drop=True)
    return history, stream, cutoff


def sort_ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    """Ratings in the deterministic replay order (timestamp, userId, movieId), with a fresh index."""
    return ratings.sort_values(_SORT_KEYS, kind="stable").reset_index(drop=True)


def _read_csv(path: Path, columns: tuple[str, ...], string_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    if not path.is_file():
        raise DataValidationError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype=dict.fromkeys(string_columns, "str"), keep_default_na=True)
    except pd.errors.EmptyDataError as exc:
        raise DataValidationError(f"{path}: file is empty") from exc
    except pd.errors.ParserError as exc:
        raise DataValidationError(f"{path}: {_parser_location(str(exc))}malformed CSV ({_first_line(exc)})") from exc
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except ValueError as exc:
        raise DataValidationError(f"{path}: malformed CSV ({_first_line(exc)})") from exc
    _require_columns(frame, columns, str(path))
    return frame


def _parser_location(message: str) -> str:
    if match := _PARSER_LINE.search(message):
        return f"row {max(int(match.group(1)) - 1, 1)}: "
    if match := _PARSER_ROW.search(message):
        return f"row {max(int(match.group(1)), 1)}: "
    return ""


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], source: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        found = ",".join(str(column) for column in frame.columns)
        raise DataValidationError(
            f"{source}: header: missing column(s) {', '.join(missing)}; expected {','.join(columns)}, found {found}"
        )


def _numeric_column(frame: pd.DataFrame, column: str, source: str, *, integer: bool) -> pd.Series:
    values = frame[column]
    _raise_on_first(frame, values.isna().to_numpy(), source, f"{column} is missing")
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        coerced = pd.to_numeric(values, errors="coerce")
        _raise_on_first(frame, coerced.isna().to_numpy(), source, f"{column} is not a number", column)
        values = coerced
    if integer:
        as_float = values.to_numpy(dtype=np.float64)
        _raise_on_first(frame, as_float != np.floor(as_float), source, f"{column} is not an integer", column)
        return values.astype(np.int64)
    return values.astype(np.float64)


def _check_numeric(frame: pd.DataFrame, column: str, source: str, *, integer: bool) -> None:
    values = frame[column]
    _raise_on_first(frame, values.isna().to_numpy(), source, f"{column} is missing")
    if integer and not pd.api.types.is_integer_dtype(values):
        raise DataValidationError(f"{source}: column {column} has dtype {values.dtype}, expected integers")
    if not integer and (not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        raise DataValidationError(f"{source}: column {column} has dtype {values.dtype}, expected numbers")


def _raise_on_first(frame: pd.DataFrame, bad: np.ndarray, source: str, problem: str, column: str | None = None) -> None:
    positions = np.flatnonzero(bad)
    if positions.size == 0:
        return
    position = int(positions[0])
    label = frame.index[position]
    row = int(label) + 1 if isinstance(label, int | np.integer) else position + 1
    detail = f" ({_show(frame[column].iloc[position])})" if column is not None else ""
    more = f" [{positions.size - 1} more row(s) with this problem]" if positions.size > 1 else ""
    raise DataValidationError(f"{source}: row {row}: {problem}{detail}{more}")


def _show(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _zipf_weights(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    weights = weights[rng.permutation(n)]
    return weights / weights.sum()


def _allocate(rng: np.random.Generator, total: int, weights: np.ndarray, cap: int) -> np.ndarray:
    counts = np.minimum(rng.multinomial(total, weights), cap)
    while (deficit := total - int(counts.sum())) > 0:
        room = (cap - counts) * weights
        counts = np.minimum(counts + rng.multinomial(deficit, room / room.sum()), cap)
    return counts


def _session_timestamps(rng: np.random.Generator, count: int, start: int) -> np.ndarray:
    session_starts = start + np.sort(rng.integers(0, 2 * 365 * 86_400, max(1, count // 15)))
    session = np.sort(rng.integers(0, len(session_starts), count))
    gaps = np.where(rng.random(count) < 0.25, 0, rng.integers(1, 600, count))
    offsets = np.zeros(count, dtype=np.int64)
    for index in range(1, count):
        offsets[index] = 0 if session[index] != session[index - 1] else offsets[index - 1] + gaps[index]
    return session_starts[session] + offsets


def _synthetic_movies(rng: np.random.Generator, n_movies: int) -> tuple[pd.DataFrame, np.ndarray]:
    movie_ids = np.sort(rng.choice(np.arange(1, 3 * n_movies + 1), size=n_movies, replace=False))
    real_genres = [genre for genre in GENRES if not genre.startswith("(")]
    genre_weights = np.linspace(3.0, 0.5, len(real_genres))
    genre_weights /= genre_weights.sum()
    years = np.clip(np.round(2018 - rng.gamma(2.0, 9.0, n_movies)), 1915, 2018).astype(int)
    has_year = rng.random(n_movies) >= 0.02
    no_genres = rng.random(n_movies) < 0.01
    one_hot = np.zeros((n_movies, len(GENRES)), dtype=np.float64)
    titles, genres = [], []
    for index in range(n_movies):
        name = f"Synthetic Movie {movie_ids[index]}"
        titles.append(f"{name} ({years[index]})" if has_year[index] else name)
        if no_genres[index]:
            picked = [GENRES.index("(no genres listed)")]
        else:
            drawn = rng.choice(len(real_genres), size=int(rng.integers(1, 4)), replace=False, p=genre_weights)
            picked = sorted(GENRES.index(real_genres[genre]) for genre in drawn)
        one_hot[index, picked] = 1.0
        genres.append("|".join(GENRES[genre] for genre in picked))
    movies = pd.DataFrame({"movieId": movie_ids.astype(np.int64), "title": titles, "genres": genres})
    return movies, one_hot
