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


def _residuals(ratings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each rating's residual against its movie's and against its user's shrunk mean, both taken over the ratings
    before it in the replay order (what the sequential families sum), from cumulative sums."""
    k = spec.PRIOR_STRENGTH
    rating = ratings["rating"].to_numpy()
    seen = np.arange(len(ratings))
    global_total = np.cumsum(rating) - rating
    global_mean = np.where(seen > 0, global_total / np.maximum(seen, 1), spec.PRIOR_MEAN)

    def shrunk_before(key: str) -> np.ndarray:
        count = ratings.groupby(key).cumcount().to_numpy()
        total = ratings.groupby(key)["rating"].cumsum().to_numpy() - rating
        return (total + k * global_mean) / (count + k)

    return rating - shrunk_before("movieId"), rating - shrunk_before("userId")


def _sequential_reference(
    ratings: pd.DataFrame,
    mine: pd.DataFrame,
    theirs: pd.DataFrame,
    residuals: tuple[np.ndarray, np.ndarray],
    global_mean: float,
    global_like: float,
) -> dict[str, float]:
    k = spec.PRIOR_STRENGTH
    against_movie, against_user = residuals
    expected = {
        "user_residual_mean": against_movie[mine.index].sum() / (len(mine) + k),
        "movie_residual_mean": against_user[theirs.index].sum() / (len(theirs) + k),
        "user_last_rating": mine["rating"].iloc[-1] if len(mine) else global_mean,
    }
    series = {
        "rating": (mine["rating"].to_numpy(), global_mean),
        "residual": (against_movie[mine.index], 0.0),
        "like": ((mine["rating"] >= 4.0).to_numpy(dtype=float), global_like),
    }
    for kind, (values, default) in series.items():
        for rate in spec.RECENCY_RATES:
            average = default
            for position, value in enumerate(values):
                average = value if position == 0 else (1 - rate) * average + rate * value
            expected[f"user_recent_{kind}_r{round(rate * 100):02d}"] = average
    return expected


def _reference(
    ratings: pd.DataFrame,
    genres_of: dict[int, set[str]],
    years: dict[int, float],
    row: pd.Series,
    residuals: tuple[np.ndarray, np.ndarray],
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
    expected |= _sequential_reference(ratings, mine, theirs, residuals, global_mean, global_like)
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
