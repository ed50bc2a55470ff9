"""The incremental features use only strictly earlier ratings: checked against a plain pandas recomputation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streamml.data.movielens import load, sort_ratings
from streamml.features import spec
from streamml.features.spec import FEATURE_NAMES, FeatureState


@pytest.fixture(scope="module")
def dataset(movielens_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    ratings, movies = load(movielens_dir)
    ordered = sort_ratings(ratings)
    features = spec.point_in_time_features(FeatureState.from_movies(movies), ordered)
    return ordered, movies, features


def _residuals(ratings: pd.DataFrame) -> dict[str, np.ndarray]:
    """What each rating adds to the sequential families, taken against the ratings before it in the replay order,
    from cumulative sums: its residual against its movie's and its user's shrunk mean, its like minus the movie's
    shrunk like-rate, the movie's shrunk mean minus the global mean, and the rating minus the global mean."""
    k = spec.PRIOR_STRENGTH
    rating = ratings["rating"].to_numpy()
    like = (rating >= 4.0).astype(float)
    seen = np.arange(len(ratings))
    global_mean = np.where(seen > 0, (np.cumsum(rating) - rating) / np.maximum(seen, 1), spec.PRIOR_MEAN)
    global_like = np.where(seen > 0, (np.cumsum(like) - like) / np.maximum(seen, 1), spec.PRIOR_LIKE_RATE)

    def shrunk_before(key: str, values: np.ndarray, prior: np.ndarray) -> np.ndarray:
        count = ratings.groupby(key).cumcount().to_numpy()
        total = pd.Series(values).groupby(ratings[key].to_numpy()).cumsum().to_numpy() - values
        return (total + k * prior) / (count + k)

    movie_mean = shrunk_before("movieId", rating, global_mean)
    return {
        "against_movie": rating - movie_mean,
        "against_user": rating - shrunk_before("userId", rating, global_mean),
        "like_against_movie": like - shrunk_before("movieId", like, global_like),
        "movie_offset": movie_mean - global_mean,
        "rating_offset": rating - global_mean,
    }


def _fold(values: np.ndarray, rate: float, start: float | None = None) -> float:
    """An exponentially weighted moving average: ``start`` (or the first value when None), then each value."""
    average = start
    for value in values:
        average = value if average is None else (1 - rate) * average + rate * value
    return 0.0 if average is None else float(average)


def _sequential_reference(
    ratings: pd.DataFrame,
    row: pd.Series,
    mine: pd.DataFrame,
    theirs: pd.DataFrame,
    genres: list[str],
    genres_of: dict[int, set[str]],
    year: float,
    sequential: dict[str, np.ndarray],
    global_mean: float,
    global_like: float,
) -> dict[str, float]:
    k = spec.PRIOR_STRENGTH
    residual = sequential["against_movie"][mine.index]
    expected = {
        "user_residual_mean": residual.sum() / (len(mine) + k),
        "movie_residual_mean": sequential["against_user"][theirs.index].sum() / (len(theirs) + k),
        "user_last_rating": mine["rating"].iloc[-1] if len(mine) else global_mean,
    }
    series = {
        "rating": (mine["rating"].to_numpy(), global_mean),
        "residual": (residual, 0.0),
        "like": ((mine["rating"] >= 4.0).to_numpy(dtype=float), global_like),
    }
    for kind, (values, default) in series.items():
        for rate in spec.RECENCY_RATES:
            expected[f"user_recent_{kind}_r{round(rate * 100):02d}"] = _fold(values, rate) if len(mine) else default

    taste = {"recent": [], "mean": [], "like": []}
    for genre in genres:
        in_genre = mine["movieId"].map(lambda m, g=genre: g in genres_of[m]).to_numpy(dtype=bool)
        taste["recent"].append(_fold(residual[in_genre], 0.2, 0.0))
        taste["mean"].append(residual[in_genre].sum() / (in_genre.sum() + spec.GENRE_PRIOR_STRENGTH))
        taste["like"].append(_fold(sequential["like_against_movie"][mine.index][in_genre], 0.2, 0.0))
    expected |= {
        "user_genre_recent_residual": np.mean(taste["recent"]) if genres else 0.0,
        "user_genre_residual_mean": np.mean(taste["mean"]) if genres else 0.0,
        "user_genre_residual_max": max(taste["mean"]) if genres else 0.0,
        "user_genre_residual_min": min(taste["mean"]) if genres else 0.0,
        "user_genre_recent_like_residual": np.mean(taste["like"]) if genres else 0.0,
    }

    n = len(mine) + 1.0
    stars = mine["rating"].to_numpy()
    expected |= {
        "user_half_star_share": ((stars * 2) % 2 == 1).sum() / n,
        "user_five_star_share": (stars == 5.0).sum() / n,
        "user_low_rating_share": (stars <= 2.0).sum() / n,
        "user_recent_residual_sq": _fold(residual**2, 0.1, 0.0),
        "user_residual_rms": np.sqrt((residual**2).sum() / n),
    }

    ts = row["timestamp"]
    movie_days = (ts - theirs["timestamp"].min()) / 86_400 if len(theirs) else -1.0
    earlier = (ratings["timestamp"] < ts).sum()
    expected |= {
        "movie_age_years": 1970 + ts / 31_557_600 - year if not np.isnan(year) else -100.0,
        "movie_days_since_first_rating": movie_days,
        "user_days_since_first_rating": (ts - mine["timestamp"].min()) / 86_400 if len(mine) else -1.0,
        "movie_ratings_per_day": len(theirs) / (movie_days + 1) if len(theirs) else 0.0,
        "movie_popularity": len(theirs) / (earlier + 1) * 1e4,
    }

    movie_offset = (theirs["rating"].sum() + k * global_mean) / (len(theirs) + k) - global_mean
    if len(mine):  # a least-squares line of the user's ratings on the movies' means, shrunk toward slope 1
        x, y = sequential["movie_offset"][mine.index], sequential["rating_offset"][mine.index]
        slope = (((x - x.mean()) * (y - y.mean())).sum() + 2.0) / (((x - x.mean()) ** 2).sum() + 2.0)
        expected |= {"user_taste_slope": slope, "user_taste_prediction": y.mean() + slope * (movie_offset - x.mean())}
    else:
        expected |= {"user_taste_slope": 1.0, "user_taste_prediction": movie_offset}
    return expected


def _reference(
    ratings: pd.DataFrame,
    genres_of: dict[int, set[str]],
    years: dict[int, float],
    row: pd.Series,
    residuals: dict[str, np.ndarray],
) -> dict:
    """Every feature of ``row`` recomputed from scratch, the slow obvious way."""
    earlier = ratings[ratings["timestamp"] < row["timestamp"]]
    k, k_genre = spec.PRIOR_STRENGTH, spec.GENRE_PRIOR_STRENGTH
    global_mean = earlier["rating"].mean() if len(earlier) else spec.PRIOR_MEAN
    global_like = (earlier["rating"] >= 4.0).mean() if len(earlier) else spec.PRIOR_LIKE_RATE
    mine = earlier[earlier["userId"] == row["userId"]]
    theirs = earlier[earlier["movieId"] == row["movieId"]]
    genres = sorted(genres_of[row["movieId"]] & set(spec.GENRES))

    affinity = share = 0.0
    if len(mine) and genres:
        in_genre = {g: mine[mine["movieId"].map(lambda m, g=g: g in genres_of[m])]["rating"] for g in genres}
        mean = mine["rating"].mean()
        affinity = np.mean([(r.sum() - len(r) * mean) / (len(r) + k_genre) for r in in_genre.values()])
        share = np.mean([len(r) / len(mine) for r in in_genre.values()])

    def shrunk(frame: pd.DataFrame) -> tuple[float, float, float]:
        n = len(frame)
        mean = (frame["rating"].sum() + k * global_mean) / (n + k)
        like = ((frame["rating"] >= 4.0).sum() + k * global_like) / (n + k)
        std = frame["rating"].std(ddof=0) if n >= 2 else 0.0
        return mean, like, std

    user_mean, user_like, user_std = shrunk(mine)
    movie_mean, movie_like, movie_std = shrunk(theirs)
    year = years[row["movieId"]]
    expected = {
        "user_count": len(mine),
        "user_mean_shrunk": user_mean,
        "user_like_rate": user_like,
        "user_rating_std": user_std,
        "user_genre_affinity": affinity,
        "user_genre_share": share,
        "seconds_since_user_prev_rating": row["timestamp"] - mine["timestamp"].max() if len(mine) else -1.0,
        "movie_count": len(theirs),
        "movie_mean_shrunk": movie_mean,
        "movie_like_rate": movie_like,
        "movie_rating_std": movie_std,
        "movie_year": spec.DEFAULT_MOVIE_YEAR if np.isnan(year) else year,
        "movie_has_year": 0.0 if np.isnan(year) else 1.0,
    }
    for genre in spec.GENRES:
        expected[spec.genre_feature_name(genre)] = 1.0 if genre in genres else 0.0
    expected |= _sequential_reference(
        ratings, row, mine, theirs, genres, genres_of, year, residuals, global_mean, global_like
    )
    return {name: float(value) for name, value in expected.items()}


def test_sampled_rows_match_a_pandas_recomputation(dataset: tuple[pd.DataFrame, pd.DataFrame, np.ndarray]) -> None:
    ratings, movies, features = dataset
    genres_of = {int(m): set(g.split("|")) for m, g in zip(movies["movieId"], movies["genres"], strict=True)}
    years = dict(
        zip(
            movies["movieId"].astype(int),
            pd.to_numeric(movies["title"].str.extract(r"\((\d{4})[^)]*\)\s*$")[0]).astype(float),
            strict=True,
        )
    )
    rng = np.random.default_rng(42)
    tied = ratings.index[ratings["timestamp"].duplicated(keep=False)].to_numpy()
    sample = np.concatenate(
        [[0, len(ratings) - 1], rng.choice(len(ratings), 30, replace=False), tied[:: max(1, len(tied) // 8)]]
    )
    residuals = _residuals(ratings)
    for position in sample:
        expected = _reference(ratings, genres_of, years, ratings.iloc[position], residuals)
        actual = dict(zip(FEATURE_NAMES, features[position].tolist(), strict=True))
        assert actual == pytest.approx(expected, abs=1e-9), f"row {position}"


def test_a_rows_own_rating_never_reaches_its_features(
    dataset: tuple[pd.DataFrame, pd.DataFrame, np.ndarray],
) -> None:
    ratings, movies, features = dataset
    prefix = ratings.iloc[:4000].copy()
    base = features[:4000]
    # A row whose user rates again later (strictly later timestamp) inside the prefix, preferably one whose
    # user also rates another movie in the same second (the next row, given the sort), which must not see it.
    later_of_user = prefix.groupby("userId")["timestamp"].transform("max")
    rates_later = (prefix["timestamp"] < later_of_user).to_numpy()
    tie_mate_next = (
        (prefix["userId"].shift(-1) == prefix["userId"]) & (prefix["timestamp"].shift(-1) == prefix["timestamp"])
    ).to_numpy()
    candidates = np.flatnonzero(rates_later & tie_mate_next)
    if len(candidates) == 0:
        candidates = np.flatnonzero(rates_later)
    target = int(candidates[len(candidates) // 3])
    ts, user = prefix["timestamp"].iloc[target], prefix["userId"].iloc[target]
    changed = prefix.copy()
    original = changed.loc[target, "rating"]
    changed.loc[target, "rating"] = 0.5 if original >= 3.0 else 5.0

    again = spec.point_in_time_features(FeatureState.from_movies(movies), changed)
    same_time_or_earlier = (prefix["timestamp"] <= ts).to_numpy()
    np.testing.assert_array_equal(again[same_time_or_earlier], base[same_time_or_earlier])
    later_same_user = ((prefix["timestamp"] > ts) & (prefix["userId"] == user)).to_numpy()
    for name in ("user_mean_shrunk", "user_residual_mean", "user_recent_rating_r03"):
        column = FEATURE_NAMES.index(name)
        assert np.all(again[later_same_user, column] != base[later_same_user, column]), name


def test_features_of_a_prefix_do_not_depend_on_the_future(
    dataset: tuple[pd.DataFrame, pd.DataFrame, np.ndarray],
) -> None:
    ratings, movies, features = dataset
    # Cut inside a group of equal timestamps when there is one: its rows still must not see each other.
    tied = np.flatnonzero(ratings["timestamp"].duplicated().to_numpy())
    cut = int(tied[len(tied) // 2]) if len(tied) else len(ratings) // 2
    prefix_features = spec.point_in_time_features(FeatureState.from_movies(movies), ratings.iloc[:cut])
    np.testing.assert_array_equal(prefix_features, features[:cut])


def test_permuting_every_rating_from_a_time_on_leaves_every_earlier_row_bit_identical(
    dataset: tuple[pd.DataFrame, pd.DataFrame, np.ndarray],
) -> None:
    """The issue's check, for every family: shuffle the ratings (values) of all rows at or after T; every row before
    T keeps its features to the bit, and later rows do change (in every family that reads rating values)."""
    ratings, movies, features = dataset
    cut = len(ratings) * 3 // 5
    t = ratings["timestamp"].iloc[cut]
    after = (ratings["timestamp"] >= t).to_numpy()
    shuffled = ratings.copy()
    shuffled.loc[after, "rating"] = np.random.default_rng(7).permutation(ratings.loc[after, "rating"].to_numpy())
    again = spec.point_in_time_features(FeatureState.from_movies(movies), shuffled)
    np.testing.assert_array_equal(again[~after], features[~after])
    for family, names in spec.FAMILIES.items():
        if family == "age":  # counts and times only: the rating values do not reach it
            continue
        columns = [FEATURE_NAMES.index(name) for name in names]
        assert (again[after][:, columns] != features[after][:, columns]).any(), family
