"""The one point-in-time feature definition for MovieLens "like" prediction.

Spark (:mod:`streamml.features.spark`), the streaming feature updater, the scorer and the API all compute features
through this module's definitions; parity tests prove the Spark transforms agree with it row by row.

Point in time. The features of a rating at time ``t`` use only ratings with a timestamp strictly earlier than
``t``. Ratings sharing a timestamp do not see each other. :meth:`FeatureState.point_in_time` honours this by computing
the features of a whole group of equal timestamps before applying any of them. The streaming updater applies one
feedback rating at a time (:meth:`FeatureState.apply`), so a request scored online can see a rating that shares
its timestamp; that is the only place online and offline may differ, besides updater lag.

State. Per user: ``count``, ``total`` (sum of ratings), ``total_sq`` (sum of squares), ``likes``, ``last_ts``
(latest timestamp) and, per genre ``g``, ``genre_count[g]`` / ``genre_total[g]`` (count and sum of the user's
ratings of movies in ``g``). Per movie: its genres and release year (catalog metadata) and the same rating sums.
Globally: ``count``, ``total``, ``likes``. All sums of ratings are multiples of 0.25, hence exact in float64 and
independent of summation order, which is what makes Spark and Python agree bit for bit.

Definitions (``n`` a count, ``K`` = :data:`PRIOR_STRENGTH`, ``K_g`` = :data:`GENRE_PRIOR_STRENGTH`):

- ``global_mean`` = global total / global count, or :data:`PRIOR_MEAN` when there is no earlier rating at all;
  ``global_like_rate`` likewise with :data:`PRIOR_LIKE_RATE`. Both are taken over every strictly earlier rating.
- ``user_count`` = n_u; ``user_mean_shrunk`` = (total_u + K * global_mean) / (n_u + K);
  ``user_like_rate`` = (likes_u + K * global_like_rate) / (n_u + K) (shrunk toward the global like-rate);
  ``user_rating_std`` = population std sqrt((n * total_sq - total^2) / n^2), 0 when n_u < 2.
- ``user_genre_affinity``: with the user's raw mean m_u = total_u / n_u, the user's shrunk, centred mean in genre
  ``g`` is d_g = (genre_total[g] - genre_count[g] * m_u) / (genre_count[g] + K_g) (that is, the genre mean shrunk
  toward m_u, minus m_u); the feature is the mean of d_g over this movie's genres, 0 when the user has no earlier
  rating or the movie no known genre.
- ``user_genre_share``: mean over this movie's genres of genre_count[g] / n_u (how much of the user's history is in
  these genres), 0 in the same cases.
- ``seconds_since_user_prev_rating`` = t - last_ts_u (clipped at 0), or :data:`NO_PREVIOUS_RATING` (-1) when the
  user has no earlier rating.
- ``movie_count``, ``movie_mean_shrunk``, ``movie_like_rate``, ``movie_rating_std``: as for the user.
- ``movie_year``: the release year parsed from the title (``"Toy Story (1995)"``, first year of ``"(2006-2007)"``),
  else :data:`DEFAULT_MOVIE_YEAR`; ``movie_has_year`` is 1.0 when the title has a year.
- ``genre_<name>``: one-hot of the movie's genres over :data:`GENRES`; unknown genre names are ignored.

Sequential families, chosen on a validation split inside history (docs/models.md). Their values depend on the
order ratings are applied in (event time, then user, then movie: the order of :meth:`FeatureState.point_in_time`
and of the feature updater), so no window expresses them; offline they are the streaming code replayed over history
by :mod:`.backfill`. Online they equal offline while feedback is applied in event order (the replayer sends it so,
keyed by user); feedback applied out of order across users keeps every count and sum exact but moves these values.
Residuals and offsets are taken against the states just before the rating:

- residuals: applying a rating ``r`` adds ``r - movie_mean_shrunk`` (the movie's and the global state just before
  the rating) to the user's ``residual_total`` and ``r - user_mean_shrunk`` to the movie's.
  ``user_residual_mean`` = residual_total_u / (n_u + K), ``movie_residual_mean`` likewise.
- recency: per rate ``a`` in :data:`RECENCY_RATES`, exponentially weighted moving averages over the user's ratings
  in apply order, of the rating, of its residual (as above) and of its like (0/1): the user's first rating sets each
  average to its value, every later one moves it to ``(1 - a) * average + a * value``. ``user_last_rating`` is the
  latest applied rating. A user without a rating gets ``global_mean`` for the rating averages and the last rating,
  0 for the residual averages and ``global_like_rate`` for the like averages.
- genre taste: per genre of the rated movie, the user keeps a moving average (:data:`GENRE_RECENCY_RATE`, from 0)
  of the residual and of the like residual (the like minus the movie's shrunk like-rate), and the residuals' sum.
  Over this movie's genres: ``user_genre_recent_residual`` and ``user_genre_recent_like_residual`` are the means of
  the averages; ``user_genre_residual_mean``/``_max``/``_min`` the mean, max and min of the genre's residual sum
  / (genre count + K_g). All 0 when the movie has no genre.
- rating scale: the user's shares of half-star ratings, of 5.0 and of ratings <= 2.0 (count / (n_u + 1)), a moving
  average of the squared residual (:data:`SQUARED_RESIDUAL_RATE`, from 0) and the root of sum of squared residuals
  / (n_u + 1).
- age: ``movie_age_years`` = 1970 + t / :data:`SECONDS_PER_YEAR` - release year (:data:`NO_YEAR_AGE` without a
  year); ``movie_days_since_first_rating`` and ``user_days_since_first_rating`` from the earliest applied rating
  (:data:`NO_FIRST_RATING` without one); ``movie_ratings_per_day`` = movie count / (those days + 1) (0 without a
  rating); ``movie_popularity`` = movie count / (global count + 1) * :data:`POPULARITY_SCALE`.
- taste line: a least-squares line of the user's ratings on the movies' means, both centred on the global mean at
  the time (x = the movie's shrunk mean - global mean, y = rating - global mean, summed per user). With the user's
  means x̄, ȳ: ``user_taste_slope`` = (Sxy - Sx ȳ + :data:`SLOPE_PRIOR`) / (max(Sxx - Sx x̄, 0) + SLOPE_PRIOR), and
  ``user_taste_prediction`` = ȳ + slope * (x_this_movie - x̄); a user without a rating gets slope 1 and x_this_movie.

A user or movie without state (never seen, or absent from the catalog) gets zero counts, so every mean falls back
to the global prior; an unknown movie has no genres and no year. ``cold_start`` is true when the user or the movie
has no strictly earlier rating. The label is ``rating >= LIKE_THRESHOLD``.

Everything here is pure Python and numpy; the scorer's hot path (:func:`features_from_states`,
:func:`feature_matrix`, and :mod:`.packing`, which reads the states from Redis) touches no pandas.
"""

from __future__ import annotations

import logging
import math
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from streamml.features.state import (
    DEFAULT_MOVIE_YEAR,
    GENRE_INDEX,
    GENRE_PRIOR_STRENGTH,
    GENRE_RECENCY_RATE,
    GENRE_SEPARATOR,
    GENRES,
    LIKE_THRESHOLD,
    N_GENRES,
    N_RATES,
    N_RECENT,
    NO_FIRST_RATING,
    NO_PREVIOUS_RATING,
    NO_YEAR_AGE,
    POPULARITY_SCALE,
    PRIOR_LIKE_RATE,
    PRIOR_MEAN,
    PRIOR_STRENGTH,
    RECENCY_RATES,
    SECONDS_PER_DAY,
    SECONDS_PER_YEAR,
    SLOPE_PRIOR,
    SQUARED_RESIDUAL_RATE,
    YEAR_PATTERN,
    GlobalState,
    MovieState,
    UserState,
    apply_rating,
    genre_mask,
    label,
    parse_genres,
    parse_year,
    shrunk_mean,
)

logger = logging.getLogger(__name__)

# The state's names are re-exported: spec is the one entry point of the definition.
__all__ = [
    "AGE_FEATURES",
    "AGGREGATE_FEATURES",
    "DEFAULT_MOVIE_YEAR",
    "FAMILIES",
    "FEATURE_NAMES",
    "FeatureState",
    "GENRES",
    "GENRE_FEATURES",
    "GENRE_INDEX",
    "GENRE_PRIOR_STRENGTH",
    "GENRE_RECENCY_RATE",
    "GENRE_SEPARATOR",
    "GENRE_TASTE_FEATURES",
    "GlobalState",
    "LABEL",
    "LIKE_THRESHOLD",
    "MOVIE_FEATURES",
    "MovieState",
    "NO_FIRST_RATING",
    "NO_PREVIOUS_RATING",
    "NO_YEAR_AGE",
    "N_FEATURES",
    "N_GENRES",
    "N_RATES",
    "N_RECENT",
    "POPULARITY_SCALE",
    "PRIOR_LIKE_RATE",
    "PRIOR_MEAN",
    "PRIOR_STRENGTH",
    "RATING_SCALE_FEATURES",
    "RECENCY_FEATURES",
    "RECENCY_RATES",
    "RESIDUAL_FEATURES",
    "SECONDS_PER_DAY",
    "SECONDS_PER_YEAR",
    "SEQUENTIAL_FEATURES",
    "SLOPE_PRIOR",
    "SQUARED_RESIDUAL_RATE",
    "TASTE_LINE_FEATURES",
    "USER_FEATURES",
    "UserState",
    "YEAR_PATTERN",
    "apply_rating",
    "cold_start_mask",
    "feature_matrix",
    "features_from_states",
    "genre_feature_name",
    "label",
    "parse_genres",
    "parse_year",
    "point_in_time_features",
    "shrunk_mean",
    "genre_mask",
]


def genre_feature_name(genre: str) -> str:
    """Column name of a genre's one-hot, e.g. ``Sci-Fi`` -> ``genre_sci_fi``."""
    slug = re.sub(r"[^a-z0-9]+", "_", genre.lower()).strip("_")
    return f"genre_{slug}"


USER_FEATURES: tuple[str, ...] = (
    "user_count",
    "user_mean_shrunk",
    "user_like_rate",
    "user_rating_std",
    "user_genre_affinity",
    "user_genre_share",
    "seconds_since_user_prev_rating",
)
MOVIE_FEATURES: tuple[str, ...] = (
    "movie_count",
    "movie_mean_shrunk",
    "movie_like_rate",
    "movie_rating_std",
    "movie_year",
    "movie_has_year",
)
GENRE_FEATURES: tuple[str, ...] = tuple(genre_feature_name(genre) for genre in GENRES)
RESIDUAL_FEATURES: tuple[str, ...] = ("user_residual_mean", "movie_residual_mean")


def _rate_suffix(rate: float) -> str:
    return f"r{round(rate * 100):02d}"


RECENCY_FEATURES: tuple[str, ...] = (
    "user_last_rating",
    *(f"user_recent_{kind}_{_rate_suffix(rate)}" for kind in ("rating", "residual", "like") for rate in RECENCY_RATES),
)
GENRE_TASTE_FEATURES: tuple[str, ...] = (
    "user_genre_recent_residual",
    "user_genre_residual_mean",
    "user_genre_residual_max",
    "user_genre_residual_min",
    "user_genre_recent_like_residual",
)
RATING_SCALE_FEATURES: tuple[str, ...] = (
    "user_half_star_share",
    "user_five_star_share",
    "user_low_rating_share",
    "user_recent_residual_sq",
    "user_residual_rms",
)
AGE_FEATURES: tuple[str, ...] = (
    "movie_age_years",
    "movie_days_since_first_rating",
    "user_days_since_first_rating",
    "movie_ratings_per_day",
    "movie_popularity",
)
TASTE_LINE_FEATURES: tuple[str, ...] = ("user_taste_slope", "user_taste_prediction")
AGGREGATE_FEATURES: tuple[str, ...] = USER_FEATURES + MOVIE_FEATURES + GENRE_FEATURES
FAMILIES: dict[str, tuple[str, ...]] = {
    "aggregates": AGGREGATE_FEATURES,
    "residuals": RESIDUAL_FEATURES,
    "recency": RECENCY_FEATURES,
    "genre_taste": GENRE_TASTE_FEATURES,
    "rating_scale": RATING_SCALE_FEATURES,
    "age": AGE_FEATURES,
    "taste_line": TASTE_LINE_FEATURES,
}
"""Feature families, in :data:`FEATURE_NAMES` order: the windowed aggregates (Spark windows offline) and the
sequential families (the backfill offline)."""
SEQUENTIAL_FEATURES: tuple[str, ...] = tuple(
    name for family, members in FAMILIES.items() if family != "aggregates" for name in members
)
FEATURE_NAMES: tuple[str, ...] = tuple(name for family in FAMILIES.values() for name in family)
"""The model's input columns, in order."""
N_FEATURES = len(FEATURE_NAMES)
LABEL = "label"

_USER_COUNT = FEATURE_NAMES.index("user_count")
_MOVIE_COUNT = FEATURE_NAMES.index("movie_count")
_FIRST_GENRE = FEATURE_NAMES.index(GENRE_FEATURES[0])
_FIRST_SEQUENTIAL = FEATURE_NAMES.index(SEQUENTIAL_FEATURES[0])


_EMPTY_USER = UserState()
_EMPTY_MOVIE = MovieState()
_GENRE_BITS = np.arange(N_GENRES, dtype=np.uint32)


def _recent_defaults(global_mean: float, global_like_rate: float) -> list[float]:
    return [global_mean] * N_RATES + [0.0] * N_RATES + [global_like_rate] * N_RATES


def _std(count: int, total: float, total_sq: float) -> float:
    if count < 2:
        return 0.0
    variance = (count * total_sq - total * total) / (count * count)
    return math.sqrt(variance) if variance > 0.0 else 0.0


def features_from_states(
    user: UserState | None, movie: MovieState | None, globals_: GlobalState, ts: int
) -> tuple[list[float], bool]:
    """Feature vector (in :data:`FEATURE_NAMES` order) of a rating request at ``ts``, and its cold-start flag.

    ``user`` and ``movie`` must hold only ratings strictly earlier than ``ts``; None means never seen.
    """
    u = user if user is not None else _EMPTY_USER
    m = movie if movie is not None else _EMPTY_MOVIE
    global_mean = globals_.mean
    global_like_rate = globals_.like_rate

    affinity = 0.0
    share = 0.0
    if u.count > 0 and m.genres:
        user_mean = u.total / u.count
        for genre in m.genres:
            genre_count = u.genre_count[genre]
            affinity += (u.genre_total[genre] - genre_count * user_mean) / (genre_count + GENRE_PRIOR_STRENGTH)
            share += genre_count / u.count
        affinity /= len(m.genres)
        share /= len(m.genres)
    since = NO_PREVIOUS_RATING if u.last_ts is None else float(max(ts - u.last_ts, 0))

    one_hot = [0.0] * N_GENRES
    for genre in m.genres:
        one_hot[genre] = 1.0
    vector = [
        float(u.count),
        (u.total + PRIOR_STRENGTH * global_mean) / (u.count + PRIOR_STRENGTH),
        (u.likes + PRIOR_STRENGTH * global_like_rate) / (u.count + PRIOR_STRENGTH),
        _std(u.count, u.total, u.total_sq),
        affinity,
        share,
        since,
        float(m.count),
        (m.total + PRIOR_STRENGTH * global_mean) / (m.count + PRIOR_STRENGTH),
        (m.likes + PRIOR_STRENGTH * global_like_rate) / (m.count + PRIOR_STRENGTH),
        _std(m.count, m.total, m.total_sq),
        float(m.year if m.year is not None else DEFAULT_MOVIE_YEAR),
        1.0 if m.year is not None else 0.0,
        *one_hot,
        u.residual_total / (u.count + PRIOR_STRENGTH),
        m.residual_total / (m.count + PRIOR_STRENGTH),
        global_mean if u.last_rating is None else u.last_rating,
        *(u.recent if u.count > 0 else _recent_defaults(global_mean, global_like_rate)),
        *_genre_taste(u, m.genres),
        *_rating_scale(u),
        *_age(u, m, globals_, ts),
        *_taste_line(u, (m.total + PRIOR_STRENGTH * global_mean) / (m.count + PRIOR_STRENGTH) - global_mean),
    ]
    return vector, u.count == 0 or m.count == 0


def _genre_taste(u: UserState, genres: Sequence[int]) -> list[float]:
    if not genres:
        return [0.0] * len(GENRE_TASTE_FEATURES)
    recent = mean = like = 0.0
    top, bottom = -math.inf, math.inf
    for genre in genres:
        recent += u.genre_residual_recent[genre]
        shrunk = u.genre_residual_total[genre] / (u.genre_count[genre] + GENRE_PRIOR_STRENGTH)
        mean += shrunk
        top, bottom = max(top, shrunk), min(bottom, shrunk)
        like += u.genre_like_recent[genre]
    n = len(genres)
    return [recent / n, mean / n, top, bottom, like / n]


def _rating_scale(u: UserState) -> list[float]:
    n = u.count + 1.0
    return [
        u.half_stars / n,
        u.five_stars / n,
        u.low_ratings / n,
        u.residual_sq_recent,
        math.sqrt(u.residual_sq_total / n),
    ]


def _days_since(ts: int, first: int | None) -> float:
    return NO_FIRST_RATING if first is None else max(ts - first, 0) / SECONDS_PER_DAY


def _age(u: UserState, m: MovieState, globals_: GlobalState, ts: int) -> list[float]:
    movie_days = _days_since(ts, m.first_ts)
    return [
        NO_YEAR_AGE if m.year is None else 1970.0 + ts / SECONDS_PER_YEAR - m.year,
        movie_days,
        _days_since(ts, u.first_ts),
        0.0 if m.first_ts is None else m.count / (movie_days + 1.0),
        m.count / (globals_.count + 1.0) * POPULARITY_SCALE,
    ]


def _taste_line(u: UserState, movie_offset: float) -> list[float]:
    if u.count == 0:
        return [1.0, movie_offset]
    x_mean = u.line_x / u.count
    y_mean = u.line_y / u.count
    variance = max(u.line_xx - u.line_x * x_mean, 0.0)
    slope = (u.line_xy - u.line_x * y_mean + SLOPE_PRIOR) / (variance + SLOPE_PRIOR)
    return [slope, y_mean + slope * (movie_offset - x_mean)]


def feature_matrix(
    users: Sequence[UserState | None],
    movies: Sequence[MovieState | None],
    globals_: GlobalState,
    ts: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """Vectorised :func:`features_from_states` for a micro-batch: a float64 array of shape (batch, N_FEATURES).

    Row ``i`` equals ``features_from_states(users[i], movies[i], globals_, ts[i])[0]``; use :func:`cold_start_mask`
    for the flags. The states become columns, then :func:`feature_columns_matrix` computes.
    """
    size = len(users)
    if len(movies) != size or len(ts) != size:
        raise ValueError(f"users, movies and ts differ in length: {size}, {len(movies)}, {len(ts)}")
    us = [u if u is not None else _EMPTY_USER for u in users]
    ms = [m if m is not None else _EMPTY_MOVIE for m in movies]
    user_columns: dict[str, np.ndarray] = {}
    for name in _USER_FIELDS:
        values = [getattr(u, name) for u in us]
        if name in ("last_ts", "first_ts"):
            values = [-1 if v is None else v for v in values]
        elif name == "last_rating":
            values = [np.nan if v is None else v for v in values]
        user_columns[name] = np.array(values, dtype=np.int64 if name in _USER_INTS else np.float64)
    movie_columns = {
        "genres": np.fromiter((genre_mask(m.genres) for m in ms), np.uint32, size),
        "year": np.fromiter((-1 if m.year is None else m.year for m in ms), np.int64, size),
        "count": np.fromiter((m.count for m in ms), np.int64, size),
        "total": np.fromiter((m.total for m in ms), np.float64, size),
        "total_sq": np.fromiter((m.total_sq for m in ms), np.float64, size),
        "likes": np.fromiter((m.likes for m in ms), np.int64, size),
        "residual_total": np.fromiter((m.residual_total for m in ms), np.float64, size),
        "first_ts": np.fromiter((-1 if m.first_ts is None else m.first_ts for m in ms), np.int64, size),
    }
    return feature_columns_matrix(user_columns, movie_columns, globals_, ts)


_USER_FIELDS = tuple(f.name for f in fields(UserState))
_USER_INTS = frozenset({"count", "likes", "last_ts", "genre_count", "half_stars", "five_stars", "low_ratings",
                        "first_ts"})  # fmt: skip


def feature_columns_matrix(u: Any, m: Any, globals_: GlobalState, ts: Sequence[int] | np.ndarray) -> np.ndarray:
    """:func:`feature_matrix` from the states as columns: ``u[name]`` / ``m[name]`` are arrays of one value per row
    for every :class:`UserState` / :class:`MovieState` field (a numpy structured array of the online layouts,
    :mod:`.packing`, or a mapping of arrays), with an absent time or year -1, an absent last rating NaN, a per-genre
    list as a (rows, N_GENRES) array and a movie's genres as a bit mask."""
    size = len(ts)
    out = np.zeros((size, N_FEATURES), dtype=np.float64)
    if size == 0:
        return out
    stamps = np.asarray(ts, dtype=np.int64)

    u_count = u["count"]
    u_total = u["total"]
    u_total_sq = u["total_sq"]
    u_likes = u["likes"]
    u_last = u["last_ts"]
    u_has_last = u_last >= 0
    genre_count = u["genre_count"]
    genre_total = u["genre_total"]
    u_residual = u["residual_total"]
    u_last_rating = u["last_rating"]
    u_recent = u["recent"]

    m_count = m["count"]
    m_total = m["total"]
    m_total_sq = m["total_sq"]
    m_likes = m["likes"]
    m_year = m["year"]
    m_residual = m["residual_total"]
    one_hot = ((np.asarray(m["genres"], dtype=np.uint32)[:, None] >> _GENRE_BITS) & 1).astype(np.float64)
    n_movie_genres = one_hot.sum(axis=1)
    global_mean = globals_.mean
    global_like_rate = globals_.like_rate
    with np.errstate(divide="ignore", invalid="ignore"):
        user_mean = np.where(u_count > 0, u_total / np.maximum(u_count, 1), 0.0)
        affinity = np.zeros(size)
        share = np.zeros(size)
        # Accumulate genre by genre, in GENRES order, exactly as the scalar path does.
        for genre in range(N_GENRES):
            member = one_hot[:, genre] > 0.0
            count_g = genre_count[:, genre]
            term = (genre_total[:, genre] - count_g * user_mean) / (count_g + GENRE_PRIOR_STRENGTH)
            affinity = np.where(member, affinity + term, affinity)
            share = np.where(member, share + count_g / np.maximum(u_count, 1), share)
        has_profile = (u_count > 0) & (n_movie_genres > 0)
        divisor = np.maximum(n_movie_genres, 1.0)
        affinity = np.where(has_profile, affinity / divisor, 0.0)
        share = np.where(has_profile, share / divisor, 0.0)

    out[:, 0] = u_count
    out[:, 1] = (u_total + PRIOR_STRENGTH * global_mean) / (u_count + PRIOR_STRENGTH)
    out[:, 2] = (u_likes + PRIOR_STRENGTH * global_like_rate) / (u_count + PRIOR_STRENGTH)
    out[:, 3] = _std_array(u_count, u_total, u_total_sq)
    out[:, 4] = affinity
    out[:, 5] = share
    out[:, 6] = np.where(u_has_last, np.maximum(stamps - u_last, 0).astype(np.float64), NO_PREVIOUS_RATING)
    out[:, 7] = m_count
    out[:, 8] = (m_total + PRIOR_STRENGTH * global_mean) / (m_count + PRIOR_STRENGTH)
    out[:, 9] = (m_likes + PRIOR_STRENGTH * global_like_rate) / (m_count + PRIOR_STRENGTH)
    out[:, 10] = _std_array(m_count, m_total, m_total_sq)
    out[:, 11] = np.where(m_year >= 0, m_year, DEFAULT_MOVIE_YEAR)
    out[:, 12] = (m_year >= 0).astype(np.float64)
    out[:, _FIRST_GENRE : _FIRST_GENRE + N_GENRES] = one_hot
    column = _FIRST_SEQUENTIAL
    out[:, column] = u_residual / (u_count + PRIOR_STRENGTH)
    out[:, column + 1] = m_residual / (m_count + PRIOR_STRENGTH)
    out[:, column + 2] = np.where(np.isnan(u_last_rating), global_mean, u_last_rating)
    defaults = np.array(_recent_defaults(global_mean, global_like_rate))
    column += 3
    out[:, column : column + N_RECENT] = np.where((u_count > 0)[:, None], u_recent, defaults)
    column += N_RECENT

    # genre taste: accumulated genre by genre, in GENRES order, as the scalar path does
    genre_recent = u["genre_residual_recent"]
    genre_residual = u["genre_residual_total"]
    genre_like = u["genre_like_recent"]
    recent_sum, mean_sum, like_sum = np.zeros(size), np.zeros(size), np.zeros(size)
    top, bottom = np.full(size, -np.inf), np.full(size, np.inf)
    for genre in range(N_GENRES):
        member = one_hot[:, genre] > 0.0
        shrunk = genre_residual[:, genre] / (genre_count[:, genre] + GENRE_PRIOR_STRENGTH)
        recent_sum = np.where(member, recent_sum + genre_recent[:, genre], recent_sum)
        mean_sum = np.where(member, mean_sum + shrunk, mean_sum)
        like_sum = np.where(member, like_sum + genre_like[:, genre], like_sum)
        top = np.where(member, np.maximum(top, shrunk), top)
        bottom = np.where(member, np.minimum(bottom, shrunk), bottom)
    has_genres = n_movie_genres > 0
    divisor = np.maximum(n_movie_genres, 1.0)
    for offset, values in enumerate((recent_sum / divisor, mean_sum / divisor, top, bottom, like_sum / divisor)):
        out[:, column + offset] = np.where(has_genres, values, 0.0)
    column += len(GENRE_TASTE_FEATURES)

    n = u_count + 1.0
    out[:, column] = u["half_stars"] / n
    out[:, column + 1] = u["five_stars"] / n
    out[:, column + 2] = u["low_ratings"] / n
    out[:, column + 3] = u["residual_sq_recent"]
    out[:, column + 4] = np.sqrt(u["residual_sq_total"] / n)
    column += len(RATING_SCALE_FEATURES)

    m_first = m["first_ts"]
    u_first = u["first_ts"]
    movie_days = np.where(m_first >= 0, np.maximum(stamps - m_first, 0) / SECONDS_PER_DAY, NO_FIRST_RATING)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, column] = np.where(m_year >= 0, 1970.0 + stamps / SECONDS_PER_YEAR - m_year, NO_YEAR_AGE)
        out[:, column + 1] = movie_days
        out[:, column + 2] = np.where(u_first >= 0, np.maximum(stamps - u_first, 0) / SECONDS_PER_DAY, NO_FIRST_RATING)
        out[:, column + 3] = np.where(m_first >= 0, m_count / (movie_days + 1.0), 0.0)
    out[:, column + 4] = m_count / (globals_.count + 1.0) * POPULARITY_SCALE
    column += len(AGE_FEATURES)

    movie_offset = (m_total + PRIOR_STRENGTH * global_mean) / (m_count + PRIOR_STRENGTH) - global_mean
    line_x = u["line_x"]
    line_xx = u["line_xx"]
    line_xy = u["line_xy"]
    line_y = u["line_y"]
    rated = u_count > 0
    x_mean = line_x / np.maximum(u_count, 1)
    y_mean = line_y / np.maximum(u_count, 1)
    slope = (line_xy - line_x * y_mean + SLOPE_PRIOR) / (np.maximum(line_xx - line_x * x_mean, 0.0) + SLOPE_PRIOR)
    out[:, column] = np.where(rated, slope, 1.0)
    out[:, column + 1] = np.where(rated, y_mean + slope * (movie_offset - x_mean), movie_offset)
    return out


def _std_array(count: np.ndarray, total: np.ndarray, total_sq: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = (count * total_sq - total * total) / (count * count)
        return np.where((count >= 2) & (variance > 0.0), np.sqrt(np.maximum(variance, 0.0)), 0.0)


def cold_start_mask(matrix: np.ndarray) -> np.ndarray:
    """Cold-start flags of a :func:`feature_matrix` result (user or movie without an earlier rating)."""
    return (matrix[:, _USER_COUNT] == 0.0) | (matrix[:, _MOVIE_COUNT] == 0.0)


@dataclass
class FeatureState:
    """The full incremental state: every user, every movie (catalog included) and the global sums."""

    users: dict[int, UserState] = field(default_factory=dict)
    movies: dict[int, MovieState] = field(default_factory=dict)
    globals: GlobalState = field(default_factory=GlobalState)

    @classmethod
    def from_catalog(
        cls, movie_ids: Iterable[int], titles: Iterable[str | None], genres: Iterable[str | None]
    ) -> FeatureState:
        """An empty state that knows every catalog movie's genres and year."""
        movies = {
            int(movie_id): MovieState.from_metadata(title, genre)
            for movie_id, title, genre in zip(movie_ids, titles, genres, strict=True)
        }
        return cls(movies=movies)

    @classmethod
    def from_movies(cls, movies: Any) -> FeatureState:
        """:meth:`from_catalog` over a movies frame (``movieId``, ``title``, ``genres`` columns)."""
        return cls.from_catalog(movies["movieId"].tolist(), movies["title"].tolist(), movies["genres"].tolist())

    def features(self, user_id: int, movie_id: int, ts: int) -> list[float]:
        """Feature vector of a request at ``ts`` from the ratings applied so far."""
        return features_from_states(self.users.get(user_id), self.movies.get(movie_id), self.globals, ts)[0]

    def apply(self, user_id: int, movie_id: int, rating: float, ts: int) -> None:
        """Add one rating. Ties are the caller's business: see :meth:`point_in_time`."""
        rating = float(rating)
        movie = self.movies.get(movie_id)
        if movie is None:
            logger.debug("movie not in catalog movie_id=%s; tracking it without metadata", movie_id)
            movie = self.movies[movie_id] = MovieState()
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = UserState()
        apply_rating(user, movie, self.globals, rating, int(ts))

    def point_in_time(
        self,
        user_ids: Sequence[int],
        movie_ids: Sequence[int],
        ratings: Sequence[float],
        timestamps: Sequence[int],
        lag: int = 0,
    ) -> np.ndarray:
        """Features of every row, then apply it; rows must be in non-decreasing timestamp order.

        Rows sharing a timestamp form a group: the whole group's features are computed before any of it is
        applied, so equal timestamps never see each other. ``lag`` simulates feedback that arrives ``lag`` seconds
        late: a row at ``t`` then sees only ratings with ``timestamp + lag < t`` (every row is applied by the end,
        in the same order). Returns a (rows, N_FEATURES) float64 array in input order.
        """
        size = len(user_ids)
        if not len(movie_ids) == len(ratings) == len(timestamps) == size:
            raise ValueError("user_ids, movie_ids, ratings and timestamps differ in length")
        if lag < 0:
            raise ValueError(f"lag must be >= 0, got {lag}")
        out = np.empty((size, N_FEATURES), dtype=np.float64)
        pending: deque[int] = deque()  # rows computed but not applied yet, in order

        def apply_row(row: int) -> None:
            self.apply(int(user_ids[row]), int(movie_ids[row]), float(ratings[row]), int(timestamps[row]))

        start = 0
        while start < size:
            ts = int(timestamps[start])
            end = start + 1
            while end < size and int(timestamps[end]) == ts:
                end += 1
            if end < size and int(timestamps[end]) < ts:
                raise ValueError(f"timestamps must be non-decreasing: row {end} has {timestamps[end]} after {ts}")
            while pending and int(timestamps[pending[0]]) + lag < ts:
                apply_row(pending.popleft())
            for row in range(start, end):
                out[row] = self.features(int(user_ids[row]), int(movie_ids[row]), ts)
            pending.extend(range(start, end))
            start = end
        while pending:
            apply_row(pending.popleft())
        return out


def point_in_time_features(state: FeatureState, ratings: Any, lag: int = 0) -> np.ndarray:
    """:meth:`FeatureState.point_in_time` over a ratings frame sorted by timestamp (columns ``userId``, ``movieId``,
    ``rating``, ``timestamp``; sort it with :func:`streamml.data.movielens.sort_ratings`, which also fixes the
    order of equal timestamps that the sequential families depend on); returns the feature rows in frame order."""
    return state.point_in_time(
        ratings["userId"].tolist(),
        ratings["movieId"].tolist(),
        ratings["rating"].tolist(),
        ratings["timestamp"].tolist(),
        lag,
    )
