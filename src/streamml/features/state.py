"""The incremental state behind :mod:`streamml.features.spec`'s features: the constants of the definition, the
per-user, per-movie and global states, and :func:`apply_rating`, the one per-event update that the feature updater
runs online and the backfill replays offline. What the states mean is in :mod:`.spec`'s docstring."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

LIKE_THRESHOLD = 4.0
"""A rating at or above this is a like (the label)."""
PRIOR_STRENGTH = 5.0
"""Pseudo-ratings at the global mean / like-rate added to every user and movie (shrinkage)."""
GENRE_PRIOR_STRENGTH = 3.0
"""Pseudo-ratings at the user's own mean added to each of the user's genres."""
PRIOR_MEAN = 3.5
"""Global mean used before any rating exists (MovieLens' long-run mean is about 3.5)."""
PRIOR_LIKE_RATE = 0.5
"""Global like-rate used before any rating exists."""
NO_PREVIOUS_RATING = -1.0
"""``seconds_since_user_prev_rating`` of a user without an earlier rating."""
DEFAULT_MOVIE_YEAR = 1999
"""``movie_year`` of a title without a year (the median release year of ml-latest-small)."""
RECENCY_RATES: tuple[float, ...] = (0.5, 0.3, 0.1, 0.03)
"""Weights of the newest rating in the user's moving averages (chosen on a validation split inside history)."""
N_RATES = len(RECENCY_RATES)
N_RECENT = 3 * N_RATES
"""Length of :attr:`UserState.recent`: the rating, residual and like averages, each once per rate."""
_TAKE = RECENCY_RATES * 3
_KEEP = tuple(1.0 - rate for rate in _TAKE)
GENRE_RECENCY_RATE = 0.2
"""Weight of the newest rating in the user's per-genre moving averages."""
SQUARED_RESIDUAL_RATE = 0.1
"""Weight of the newest squared residual in the user's moving average of it."""
SLOPE_PRIOR = 2.0
"""Pseudo-variance shrinking the user's taste slope toward 1 (a user who follows the crowd)."""
NO_YEAR_AGE = -100.0
"""``movie_age_years`` of a movie without a release year."""
NO_FIRST_RATING = -1.0
"""``*_days_since_first_rating`` of a user or movie without an earlier rating."""
SECONDS_PER_DAY = 86_400
SECONDS_PER_YEAR = 31_557_600
"""A Julian year: ``movie_age_years`` uses 1970 + t / SECONDS_PER_YEAR as the rating's year."""
POPULARITY_SCALE = 1e4
"""``movie_popularity`` is the movie's share of every earlier rating, per POPULARITY_SCALE."""

GENRES: tuple[str, ...] = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
    "(no genres listed)",
)
"""The 19 MovieLens genres and its "no genres" marker, in feature order."""
N_GENRES = len(GENRES)
GENRE_INDEX: dict[str, int] = {genre: index for index, genre in enumerate(GENRES)}
GENRE_SEPARATOR = "|"
YEAR_PATTERN = r"\(([0-9]{4})(?:[-\u2013][0-9]{4})?\)\s*$"
"""Release year at the end of a title; the same pattern (Java-compatible) serves Spark's ``regexp_extract``."""
_YEAR = re.compile(YEAR_PATTERN)


def label(rating: float) -> int:
    """1 when the rating is a like, else 0."""
    return int(rating >= LIKE_THRESHOLD)


def parse_year(title: str | None) -> int | None:
    """Release year at the end of a MovieLens title, or None."""
    if title is None:
        return None
    match = _YEAR.search(title)
    return int(match.group(1)) if match else None


def parse_genres(genres: str | None) -> tuple[int, ...]:
    """Sorted indices into :data:`GENRES` of a ``|``-separated genre string; unknown names are ignored."""
    if not genres:
        return ()
    return tuple(sorted({GENRE_INDEX[name] for name in genres.split(GENRE_SEPARATOR) if name in GENRE_INDEX}))


def genre_mask(genres: Iterable[int]) -> int:
    """The bit mask of a movie's genre indices (bit ``g`` set for genre ``g``): the online layout's genres."""
    mask = 0
    for genre in genres:
        mask |= 1 << genre
    return mask


def _zeros_int() -> list[int]:
    return [0] * N_GENRES


def _zeros_float() -> list[float]:
    return [0.0] * N_GENRES


def _zeros_recent() -> list[float]:
    return [0.0] * N_RECENT


def shrunk_mean(total: float, count: int, global_mean: float) -> float:
    """A mean shrunk toward the global mean by :data:`PRIOR_STRENGTH` pseudo-ratings."""
    return (total + PRIOR_STRENGTH * global_mean) / (count + PRIOR_STRENGTH)


@dataclass(slots=True)
class UserState:
    """Running sums of one user's ratings (see the module docstring)."""

    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    likes: int = 0
    last_ts: int | None = None
    genre_count: list[int] = field(default_factory=_zeros_int)
    genre_total: list[float] = field(default_factory=_zeros_float)
    residual_total: float = 0.0
    last_rating: float | None = None
    recent: list[float] = field(default_factory=_zeros_recent)
    genre_residual_recent: list[float] = field(default_factory=_zeros_float)
    genre_residual_total: list[float] = field(default_factory=_zeros_float)
    genre_like_recent: list[float] = field(default_factory=_zeros_float)
    half_stars: int = 0
    five_stars: int = 0
    low_ratings: int = 0
    residual_sq_total: float = 0.0
    residual_sq_recent: float = 0.0
    first_ts: int | None = None
    line_x: float = 0.0
    line_xx: float = 0.0
    line_xy: float = 0.0
    line_y: float = 0.0

    def apply(
        self,
        rating: float,
        ts: int,
        genres: Sequence[int],
        residual: float = 0.0,
        like_residual: float = 0.0,
        movie_offset: float = 0.0,
        global_mean: float = PRIOR_MEAN,
    ) -> None:
        """Add one rating of a movie with ``genres`` (indices) at time ``ts``. Against the states just before it:
        ``residual`` is the rating minus the movie's shrunk mean, ``like_residual`` the like (0/1) minus the movie's
        shrunk like-rate, ``movie_offset`` the movie's shrunk mean minus ``global_mean``."""
        keep = 1.0 - GENRE_RECENCY_RATE
        for genre in genres:
            self.genre_residual_recent[genre] = keep * self.genre_residual_recent[genre] + GENRE_RECENCY_RATE * residual
            self.genre_residual_total[genre] += residual
            self.genre_like_recent[genre] = keep * self.genre_like_recent[genre] + GENRE_RECENCY_RATE * like_residual
        squared = residual * residual
        self.half_stars += (rating * 2.0) % 2.0 == 1.0
        self.five_stars += rating == 5.0
        self.low_ratings += rating <= 2.0
        self.residual_sq_total += squared
        self.residual_sq_recent = (
            1.0 - SQUARED_RESIDUAL_RATE
        ) * self.residual_sq_recent + SQUARED_RESIDUAL_RATE * squared
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.line_x += movie_offset
        self.line_xx += movie_offset * movie_offset
        self.line_xy += movie_offset * (rating - global_mean)
        self.line_y += rating - global_mean
        values = (rating,) * N_RATES + (residual,) * N_RATES + ((1.0 if rating >= LIKE_THRESHOLD else 0.0),) * N_RATES
        if self.count == 0:
            self.recent = list(values)
        else:
            self.recent = [
                keep * average + take * value
                for average, keep, take, value in zip(self.recent, _KEEP, _TAKE, values, strict=True)
            ]
        self.residual_total += residual
        self.last_rating = rating
        self.count += 1
        self.total += rating
        self.total_sq += rating * rating
        self.likes += rating >= LIKE_THRESHOLD
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        for genre in genres:
            self.genre_count[genre] += 1
            self.genre_total[genre] += rating


@dataclass(slots=True)
class MovieState:
    """Catalog metadata and running sums of one movie's ratings."""

    genres: tuple[int, ...] = ()
    year: int | None = None
    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    likes: int = 0
    residual_total: float = 0.0
    first_ts: int | None = None

    @classmethod
    def from_metadata(cls, title: str | None, genres: str | None) -> MovieState:
        """A movie with no ratings yet, from its catalog title and genre string."""
        return cls(genres=parse_genres(genres), year=parse_year(title))

    def apply(self, rating: float, residual: float = 0.0, ts: int | None = None) -> None:
        """Add one rating (at ``ts``); ``residual`` is the rating minus the user's shrunk mean just before it."""
        self.residual_total += residual
        if ts is not None:
            self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.count += 1
        self.total += rating
        self.total_sq += rating * rating
        self.likes += rating >= LIKE_THRESHOLD


@dataclass(slots=True)
class GlobalState:
    """Running sums over every rating."""

    count: int = 0
    total: float = 0.0
    likes: int = 0

    @property
    def mean(self) -> float:
        """Global mean rating, :data:`PRIOR_MEAN` before any rating."""
        return self.total / self.count if self.count > 0 else PRIOR_MEAN

    @property
    def like_rate(self) -> float:
        """Global like-rate, :data:`PRIOR_LIKE_RATE` before any rating."""
        return self.likes / self.count if self.count > 0 else PRIOR_LIKE_RATE

    def apply(self, rating: float) -> None:
        """Add one rating."""
        self.count += 1
        self.total += rating
        self.likes += rating >= LIKE_THRESHOLD


def apply_rating(user: UserState, movie: MovieState, globals_: GlobalState, rating: float, ts: int) -> None:
    """The one incremental update: add a rating to its user, its movie and the global sums. The residuals are taken
    against the states just before the rating; :meth:`FeatureState.apply` and the feature updater both call this."""
    global_mean = globals_.mean
    movie_mean = shrunk_mean(movie.total, movie.count, global_mean)
    movie_like_rate = shrunk_mean(float(movie.likes), movie.count, globals_.like_rate)
    like = 1.0 if rating >= LIKE_THRESHOLD else 0.0
    user_residual = rating - shrunk_mean(user.total, user.count, global_mean)
    user.apply(
        rating, ts, movie.genres, rating - movie_mean, like - movie_like_rate, movie_mean - global_mean, global_mean
    )
    movie.apply(rating, user_residual, ts)
    globals_.apply(rating)
