"""The compiled loop of :mod:`streamml.features.backfill`: :func:`~streamml.features.spec.features_from_states` and
:func:`~streamml.features.spec.apply_rating` over one partition's ratings, with the user's state in two flat arrays.

The arithmetic is the spec's, operation for operation and in the same order, so IEEE doubles give the same bits
(no fastmath: LLVM neither reorders nor fuses them); ``tests/unit/features/test_spark_parity.py`` asserts that the
Spark job's features and snapshots equal the Python definition's bit for bit. Change the two together.

Compiled on first call, not cached on disk: the constants of the definition are compiled in, and numba's disk cache
would not see a change to them in :mod:`.state`. The first call in a process compiles for about 5 s (once per
Spark Python worker).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from streamml.features.state import (
    _KEEP,
    _TAKE,
    DEFAULT_MOVIE_YEAR,
    GENRE_PRIOR_STRENGTH,
    GENRE_RECENCY_RATE,
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
    SECONDS_PER_DAY,
    SECONDS_PER_YEAR,
    SLOPE_PRIOR,
    SQUARED_RESIDUAL_RATE,
)

# The user's state: the integer fields in one int64 array, the float fields in one float64 array.
COUNT, LIKES, LAST_TS, HALF_STARS, FIVE_STARS, LOW_RATINGS, FIRST_TS, GENRE_COUNT = range(8)
N_INTS = GENRE_COUNT + N_GENRES
TOTAL, TOTAL_SQ, RESIDUAL_TOTAL, LAST_RATING, RESIDUAL_SQ_TOTAL, RESIDUAL_SQ_RECENT = range(6)
LINE_X, LINE_XX, LINE_XY, LINE_Y, RECENT = range(6, 11)
GENRE_TOTAL = RECENT + N_RECENT
GENRE_RESIDUAL_RECENT = GENRE_TOTAL + N_GENRES
GENRE_RESIDUAL_TOTAL = GENRE_RESIDUAL_RECENT + N_GENRES
GENRE_LIKE_RECENT = GENRE_RESIDUAL_TOTAL + N_GENRES
N_FLOATS = GENRE_LIKE_RECENT + N_GENRES

USER_FIELDS: dict[str, tuple[str, int | slice]] = {
    "count": ("int", COUNT),
    "total": ("float", TOTAL),
    "total_sq": ("float", TOTAL_SQ),
    "likes": ("int", LIKES),
    "last_ts": ("int", LAST_TS),
    "genre_count": ("int", slice(GENRE_COUNT, GENRE_COUNT + N_GENRES)),
    "genre_total": ("float", slice(GENRE_TOTAL, GENRE_TOTAL + N_GENRES)),
    "residual_total": ("float", RESIDUAL_TOTAL),
    "last_rating": ("float", LAST_RATING),
    "recent": ("float", slice(RECENT, RECENT + N_RECENT)),
    "genre_residual_recent": ("float", slice(GENRE_RESIDUAL_RECENT, GENRE_RESIDUAL_RECENT + N_GENRES)),
    "genre_residual_total": ("float", slice(GENRE_RESIDUAL_TOTAL, GENRE_RESIDUAL_TOTAL + N_GENRES)),
    "genre_like_recent": ("float", slice(GENRE_LIKE_RECENT, GENRE_LIKE_RECENT + N_GENRES)),
    "half_stars": ("int", HALF_STARS),
    "five_stars": ("int", FIVE_STARS),
    "low_ratings": ("int", LOW_RATINGS),
    "residual_sq_total": ("float", RESIDUAL_SQ_TOTAL),
    "residual_sq_recent": ("float", RESIDUAL_SQ_RECENT),
    "first_ts": ("int", FIRST_TS),
    "line_x": ("float", LINE_X),
    "line_xx": ("float", LINE_XX),
    "line_xy": ("float", LINE_XY),
    "line_y": ("float", LINE_Y),
}
"""Where each :class:`~streamml.features.spec.UserState` field lives: (array, index or slice). A user with a
rating has every field set; ``last_ts``, ``first_ts`` and ``last_rating`` are None only before the first."""


INT_INPUTS: tuple[str, ...] = (
    "userId", "timestamp", "genre_mask", "year", "m_count", "m_likes", "m_first", "g_count", "g_likes",
    "ma_count", "ma_likes", "ga_count", "ga_likes",
)  # fmt: skip
"""The integer inputs of :func:`replay`, columns of its ``counts`` array in this order. ``m_*`` is the movie's state
and ``g_*`` the global sums strictly before the rating's second; ``ma_*`` and ``ga_*`` the same just before the
rating is applied (ratings earlier in replay order)."""
FLOAT_INPUTS: tuple[str, ...] = ("rating", "m_total", "m_total_sq", "m_residual", "g_total", "ma_total", "ga_total")
"""The float inputs of :func:`replay`, columns of its ``sums`` array in this order."""
USER, TS, MASK, YEAR, M_COUNT, M_LIKES, M_FIRST, G_COUNT, G_LIKES, MA_COUNT, MA_LIKES, GA_COUNT, GA_LIKES = range(13)
RATING, M_TOTAL, M_TOTAL_SQ, M_RESIDUAL, G_TOTAL, MA_TOTAL, GA_TOTAL = range(7)

_KEEP_RECENT = np.array(_KEEP, dtype=np.float64)
_TAKE_RECENT = np.array(_TAKE, dtype=np.float64)


@njit(nogil=True)
def _std(count: int, total: float, total_sq: float) -> float:  # spec._std
    if count < 2:
        return 0.0
    variance = (count * total_sq - total * total) / (count * count)
    return math.sqrt(variance) if variance > 0.0 else 0.0


@njit(nogil=True)
def _features(
    row: int, counts: np.ndarray, sums: np.ndarray, ints: np.ndarray, floats: np.ndarray, out: np.ndarray
) -> None:
    """spec.features_from_states of the user's state and row ``row``'s movie and global state, into ``out[row]``."""
    c, s = counts[row], sums[row]
    ts, mask, year = c[TS], c[MASK], c[YEAR]
    m_count, m_likes, m_first, g_count = c[M_COUNT], c[M_LIKES], c[M_FIRST], c[G_COUNT]
    m_total, m_total_sq, m_residual = s[M_TOTAL], s[M_TOTAL_SQ], s[M_RESIDUAL]
    global_mean = s[G_TOTAL] / g_count if g_count > 0 else PRIOR_MEAN
    global_like_rate = c[G_LIKES] / g_count if g_count > 0 else PRIOR_LIKE_RATE
    count = ints[COUNT]
    n_genres = 0
    for genre in range(N_GENRES):
        n_genres += (mask >> genre) & 1
    affinity = 0.0
    share = 0.0
    if count > 0 and n_genres > 0:
        user_mean = floats[TOTAL] / count
        for genre in range(N_GENRES):
            if (mask >> genre) & 1:
                genre_count = ints[GENRE_COUNT + genre]
                affinity += (floats[GENRE_TOTAL + genre] - genre_count * user_mean) / (
                    genre_count + GENRE_PRIOR_STRENGTH
                )
                share += genre_count / count
        affinity /= n_genres
        share /= n_genres
    o = out[row]
    o[0] = float(count)
    o[1] = (floats[TOTAL] + PRIOR_STRENGTH * global_mean) / (count + PRIOR_STRENGTH)
    o[2] = (ints[LIKES] + PRIOR_STRENGTH * global_like_rate) / (count + PRIOR_STRENGTH)
    o[3] = _std(count, floats[TOTAL], floats[TOTAL_SQ])
    o[4] = affinity
    o[5] = share
    o[6] = NO_PREVIOUS_RATING if count == 0 else float(max(ts - ints[LAST_TS], 0))
    o[7] = float(m_count)
    movie_mean = (m_total + PRIOR_STRENGTH * global_mean) / (m_count + PRIOR_STRENGTH)
    o[8] = movie_mean
    o[9] = (m_likes + PRIOR_STRENGTH * global_like_rate) / (m_count + PRIOR_STRENGTH)
    o[10] = _std(m_count, m_total, m_total_sq)
    o[11] = float(year) if year >= 0 else float(DEFAULT_MOVIE_YEAR)
    o[12] = 1.0 if year >= 0 else 0.0
    column = 13
    for genre in range(N_GENRES):
        o[column + genre] = 1.0 if (mask >> genre) & 1 else 0.0
    column += N_GENRES
    o[column] = floats[RESIDUAL_TOTAL] / (count + PRIOR_STRENGTH)
    o[column + 1] = m_residual / (m_count + PRIOR_STRENGTH)
    o[column + 2] = global_mean if count == 0 else floats[LAST_RATING]
    column += 3
    for i in range(N_RECENT):
        if count > 0:
            o[column + i] = floats[RECENT + i]
        elif i < N_RATES:
            o[column + i] = global_mean
        elif i < 2 * N_RATES:
            o[column + i] = 0.0
        else:
            o[column + i] = global_like_rate
    column += N_RECENT
    # spec._genre_taste
    if n_genres == 0:
        for i in range(5):
            o[column + i] = 0.0
    else:
        recent = mean = like = 0.0
        top, bottom = -math.inf, math.inf
        for genre in range(N_GENRES):
            if (mask >> genre) & 1:
                recent += floats[GENRE_RESIDUAL_RECENT + genre]
                shrunk = floats[GENRE_RESIDUAL_TOTAL + genre] / (ints[GENRE_COUNT + genre] + GENRE_PRIOR_STRENGTH)
                mean += shrunk
                if shrunk > top:
                    top = shrunk
                if shrunk < bottom:
                    bottom = shrunk
                like += floats[GENRE_LIKE_RECENT + genre]
        o[column] = recent / n_genres
        o[column + 1] = mean / n_genres
        o[column + 2] = top
        o[column + 3] = bottom
        o[column + 4] = like / n_genres
    column += 5
    # spec._rating_scale
    n = count + 1.0
    o[column] = ints[HALF_STARS] / n
    o[column + 1] = ints[FIVE_STARS] / n
    o[column + 2] = ints[LOW_RATINGS] / n
    o[column + 3] = floats[RESIDUAL_SQ_RECENT]
    o[column + 4] = math.sqrt(floats[RESIDUAL_SQ_TOTAL] / n)
    column += 5
    # spec._age
    movie_days = NO_FIRST_RATING if m_first < 0 else max(ts - m_first, 0) / SECONDS_PER_DAY
    o[column] = NO_YEAR_AGE if year < 0 else 1970.0 + ts / SECONDS_PER_YEAR - year
    o[column + 1] = movie_days
    o[column + 2] = NO_FIRST_RATING if count == 0 else max(ts - ints[FIRST_TS], 0) / SECONDS_PER_DAY
    o[column + 3] = 0.0 if m_first < 0 else m_count / (movie_days + 1.0)
    o[column + 4] = m_count / (g_count + 1.0) * POPULARITY_SCALE
    column += 5
    # spec._taste_line
    movie_offset = movie_mean - global_mean
    if count == 0:
        o[column] = 1.0
        o[column + 1] = movie_offset
    else:
        x_mean = floats[LINE_X] / count
        y_mean = floats[LINE_Y] / count
        variance = max(floats[LINE_XX] - floats[LINE_X] * x_mean, 0.0)
        slope = (floats[LINE_XY] - floats[LINE_X] * y_mean + SLOPE_PRIOR) / (variance + SLOPE_PRIOR)
        o[column] = slope
        o[column + 1] = y_mean + slope * (movie_offset - x_mean)


@njit(nogil=True)
def _apply(row: int, counts: np.ndarray, sums: np.ndarray, ints: np.ndarray, floats: np.ndarray) -> None:
    """spec.apply_rating's update of the user (UserState.apply) against the movie and global sums just before."""
    c, s = counts[row], sums[row]
    rating, ts, mask, ga_count = s[RATING], c[TS], c[MASK], c[GA_COUNT]
    global_mean = s[GA_TOTAL] / ga_count if ga_count > 0 else PRIOR_MEAN
    global_like_rate = c[GA_LIKES] / ga_count if ga_count > 0 else PRIOR_LIKE_RATE
    movie_mean = (s[MA_TOTAL] + PRIOR_STRENGTH * global_mean) / (c[MA_COUNT] + PRIOR_STRENGTH)
    movie_like_rate = (float(c[MA_LIKES]) + PRIOR_STRENGTH * global_like_rate) / (c[MA_COUNT] + PRIOR_STRENGTH)
    like = 1.0 if rating >= LIKE_THRESHOLD else 0.0
    residual = rating - movie_mean
    like_residual = like - movie_like_rate
    movie_offset = movie_mean - global_mean
    keep = 1.0 - GENRE_RECENCY_RATE
    for genre in range(N_GENRES):
        if (mask >> genre) & 1:
            at = GENRE_RESIDUAL_RECENT + genre
            floats[at] = keep * floats[at] + GENRE_RECENCY_RATE * residual
            floats[GENRE_RESIDUAL_TOTAL + genre] += residual
            at = GENRE_LIKE_RECENT + genre
            floats[at] = keep * floats[at] + GENRE_RECENCY_RATE * like_residual
    squared = residual * residual
    ints[HALF_STARS] += 1 if (rating * 2.0) % 2.0 == 1.0 else 0
    ints[FIVE_STARS] += 1 if rating == 5.0 else 0
    ints[LOW_RATINGS] += 1 if rating <= 2.0 else 0
    floats[RESIDUAL_SQ_TOTAL] += squared
    floats[RESIDUAL_SQ_RECENT] = (1.0 - SQUARED_RESIDUAL_RATE) * floats[RESIDUAL_SQ_RECENT] + (
        SQUARED_RESIDUAL_RATE * squared
    )
    first = ints[COUNT] == 0
    ints[FIRST_TS] = ts if first else min(ints[FIRST_TS], ts)
    floats[LINE_X] += movie_offset
    floats[LINE_XX] += movie_offset * movie_offset
    floats[LINE_XY] += movie_offset * (rating - global_mean)
    floats[LINE_Y] += rating - global_mean
    for i in range(N_RECENT):
        value = rating if i < N_RATES else (residual if i < 2 * N_RATES else like)
        if first:
            floats[RECENT + i] = value
        else:
            floats[RECENT + i] = _KEEP_RECENT[i] * floats[RECENT + i] + _TAKE_RECENT[i] * value
    floats[RESIDUAL_TOTAL] += residual
    floats[LAST_RATING] = rating
    ints[COUNT] += 1
    floats[TOTAL] += rating
    floats[TOTAL_SQ] += rating * rating
    ints[LIKES] += 1 if rating >= LIKE_THRESHOLD else 0
    ints[LAST_TS] = ts if first else max(ints[LAST_TS], ts)
    for genre in range(N_GENRES):
        if (mask >> genre) & 1:
            ints[GENRE_COUNT + genre] += 1
            floats[GENRE_TOTAL + genre] += rating


@njit(nogil=True)
def replay(
    counts: np.ndarray,
    sums: np.ndarray,
    following: np.ndarray,
    cutoff: int,
    current: np.ndarray,
    ints: np.ndarray,
    floats: np.ndarray,
    out: np.ndarray,
    snapshot_rows: np.ndarray,
    snapshot_ints: np.ndarray,
    snapshot_floats: np.ndarray,
) -> int:
    """Replay rows sorted by (userId, timestamp, movieId) (:data:`INT_INPUTS` in ``counts``, :data:`FLOAT_INPUTS` in
    ``sums``): each (user, second) is featurised into ``out`` before any of it is applied. ``following`` is
    (has_row, userId, timestamp) of the row after the last one; ``current`` (has_user, userId), ``ints`` and
    ``floats`` carry the user's state from call to call. A user's state after its last second before ``cutoff`` is
    copied to ``snapshot_*``, its last row to ``snapshot_rows``; returns how many were."""
    size = counts.shape[0]
    snapshots = 0
    start = 0
    while start < size:
        user_id = counts[start, USER]
        ts = counts[start, TS]
        if current[0] == 0 or current[1] != user_id:
            if current[0] != 0 and user_id < current[1]:
                raise ValueError("replay rows are not sorted by userId")
            current[0] = 1
            current[1] = user_id
            ints[:] = 0
            floats[:] = 0.0
        elif ints[COUNT] > 0 and ts < ints[LAST_TS]:
            raise ValueError("replay rows are not sorted by timestamp within a user")
        end = start + 1
        while end < size and counts[end, USER] == user_id and counts[end, TS] == ts:
            end += 1
        for row in range(start, end):
            _features(row, counts, sums, ints, floats, out)
        for row in range(start, end):
            _apply(row, counts, sums, ints, floats)
        if end < size:
            has_next, next_user, next_ts = True, counts[end, USER], counts[end, TS]
        else:
            has_next, next_user, next_ts = following[0] != 0, following[1], following[2]
        if ts < cutoff and (not has_next or next_user != user_id or next_ts >= cutoff):
            if snapshots == snapshot_rows.shape[0]:
                raise ValueError("more snapshots than users in the chunk")
            snapshot_rows[snapshots] = end - 1
            snapshot_ints[snapshots] = ints
            snapshot_floats[snapshots] = floats
            snapshots += 1
        start = end
    return snapshots
