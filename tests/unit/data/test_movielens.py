from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streamml.data import movielens
from streamml.data.movielens import load, load_movies, load_ratings, synthesize, time_split, validate
from streamml.errors import DataValidationError

MOVIES = "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n2,Heat (1995),Action|Crime\n"
RATINGS_HEADER = "userId,movieId,rating,timestamp\n"
GOOD_ROWS = "1,1,4.0,964982703\n1,2,3.5,964981247\n2,1,0.5,964982224\n"


def _write(directory: Path, ratings: str | None = RATINGS_HEADER + GOOD_ROWS, movies: str | None = MOVIES) -> Path:
    if ratings is not None:
        (directory / "ratings.csv").write_text(ratings)
    if movies is not None:
        (directory / "movies.csv").write_text(movies)
    return directory


def _error(directory: Path) -> str:
    with pytest.raises(DataValidationError) as info:
        load(directory)
    return str(info.value)


def test_a_good_directory_loads_with_the_schema_dtypes(tmp_path: Path) -> None:
    ratings, movies = load(_write(tmp_path))
    assert list(ratings.columns) == ["userId", "movieId", "rating", "timestamp"]
    assert [str(t) for t in ratings.dtypes] == ["int64", "int64", "float64", "int64"]
    assert movies["movieId"].dtype == np.int64
    assert len(ratings) == 3 and len(movies) == 2


def test_the_configured_dataset_is_valid(movielens_dir: Path) -> None:
    ratings, movies = load(movielens_dir)
    assert len(ratings) > 1000
    assert ratings["movieId"].isin(movies["movieId"]).all()


def test_missing_file(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, movies=None))
    assert "movies.csv" in message and "file not found" in message


def test_wrong_columns(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, ratings="user,movieId,rating,timestamp\n1,1,4.0,964982703\n"))
    assert "ratings.csv" in message and "header" in message and "missing column(s) userId" in message


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ("1,1,4.0,964982703\n1,2,5.5,964981247\n", ["row 2", "rating out of range", "5.5"]),
        ("1,1,4.0,964982703\n1,2,0.0,964981247\n", ["row 2", "rating out of range"]),
        ("1,1,4.0,964982703\n1,2,3.5,964981247\n2,1,3.3,964982224\n", ["row 3", "multiple of 0.5", "3.3"]),
        ("1,1,4.0,964982703\n,2,3.5,964981247\n", ["row 2", "userId is missing"]),
        ("1,1,4.0,964982703\n1,,3.5,964981247\n", ["row 2", "movieId is missing"]),
        ("1,1,4.0,964982703\n1,2,3.5\n", ["row 2", "timestamp is missing"]),
        ("1,1,4.0,964982703\nabc,2,3.5,964981247\n", ["row 2", "userId is not a number", "abc"]),
        ("1,1,4.0,964982703\n1.5,2,3.5,964981247\n", ["row 2", "userId is not an integer"]),
        ("1,1,4.0,964982703\n1,7,3.5,964981247\n", ["row 2", "movieId not found", "movies.csv"]),
        ("1,1,4.0,0\n", ["row 1", "timestamp is not positive"]),
        ("1,1,4.0,964982703\n1,2,3.5,99999999999\n", ["row 2", "timestamp is in the future"]),
        ("1,1,4.0,964982703\n1,2,3.5,964981247,extra\n", ["row 2", "malformed CSV"]),
    ],
)
def test_bad_ratings_name_file_row_and_problem(tmp_path: Path, rows: str, expected: list[str]) -> None:
    message = _error(_write(tmp_path, ratings=RATINGS_HEADER + rows))
    assert message.startswith(str(tmp_path / "ratings.csv") + ": ")
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    ("movies", "expected"),
    [
        ('movieId,title,genres\n1,"Toy Story (1995),Adventure\n2,Heat (1995),Action\n', ["row 1", "malformed CSV"]),
        ("movieId,title,genres\n1,Toy Story (1995),Adventure\n2,,Action\n", ["row 2", "title is missing"]),
        ("movieId,title,genres\n1,Toy Story (1995),Adventure\n1,Heat (1995),Action\n", ["row 2", "duplicate"]),
        ("", ["file is empty"]),
    ],
)
def test_bad_movies_name_file_row_and_problem(tmp_path: Path, movies: str, expected: list[str]) -> None:
    message = _error(_write(tmp_path, ratings=RATINGS_HEADER + "1,1,4.0,964982703\n", movies=movies))
    assert message.startswith(str(tmp_path / "movies.csv") + ": ")
    for part in expected:
        assert part in message


def test_validate_names_rows_of_in_memory_frames() -> None:
    ratings = pd.DataFrame({"userId": [1, 2], "movieId": [1, 1], "rating": [4.0, 9.0], "timestamp": [10, 20]})
    movies = pd.DataFrame({"movieId": [1], "title": ["A (2000)"], "genres": ["Drama"]})
    with pytest.raises(DataValidationError, match=r"^ratings\.csv: row 2: rating out of range"):
        validate(ratings, movies)
    with pytest.raises(DataValidationError, match="userId has dtype float64"):
        validate(ratings.astype({"userId": "float64"}), movies)


def test_load_keeps_the_source_for_later_validation(tmp_path: Path) -> None:
    _write(tmp_path)
    ratings, movies = load_ratings(tmp_path), load_movies(tmp_path)
    ratings.loc[2, "rating"] = 7.0
    with pytest.raises(DataValidationError, match=r"ratings\.csv: row 3: rating out of range"):
        validate(ratings, movies)


def test_time_split_boundaries() -> None:
    stamps = [5, 1, 2, 3, 4, 6, 7, 8, 8, 8]  # sorted: index int(0.8 * 10) = 8 holds ts 8
    ratings = pd.DataFrame({"userId": range(10, 0, -1), "movieId": [1] * 10, "rating": [4.0] * 10, "timestamp": stamps})
    history, stream, cutoff = time_split(ratings, 0.8)
    assert cutoff == 8
    assert history["timestamp"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert stream["timestamp"].tolist() == [8, 8, 8]  # the whole tie group goes to the stream
    assert stream["userId"].tolist() == [1, 2, 3]  # ties sorted by userId
    assert list(history.index) == list(range(7))

    history, stream, cutoff = time_split(ratings.assign(timestamp=range(1, 11)), 0.8)
    assert (cutoff, len(history), len(stream)) == (9, 8, 2)
    with pytest.raises(ValueError, match="quantile"):
        time_split(ratings, 1.0)


def test_time_split_of_a_real_shape(movielens_dir: Path) -> None:
    ratings = load_ratings(movielens_dir)
    history, stream, cutoff = time_split(ratings)
    assert len(history) + len(stream) == len(ratings)
    assert history["timestamp"].max() < cutoff <= stream["timestamp"].min()
    assert 0.75 <= len(history) / len(ratings) <= 0.8
    assert cutoff == np.sort(ratings["timestamp"].to_numpy())[int(0.8 * len(ratings))]


def test_synthesize_gives_a_valid_skewed_deterministic_dataset() -> None:
    ratings, movies = synthesize(n_ratings=4000, n_users=100, n_movies=500, seed=3)
    validate(ratings, movies)
    assert len(ratings) == 4000
    assert not ratings.duplicated(["userId", "movieId"]).any()
    assert [str(t) for t in ratings.dtypes] == ["int64", "int64", "float64", "int64"]

    per_user = ratings["userId"].value_counts().to_numpy()
    per_movie = ratings["movieId"].value_counts().to_numpy()
    assert per_user[:10].sum() > 0.25 * len(ratings)  # a tenth of the users give a quarter of the ratings
    assert per_movie[:25].sum() > 0.15 * len(ratings)  # 5% of the movies get 15% of the ratings
    likes = ratings["rating"] >= 4.0
    assert 0.3 < likes.mean() < 0.7
    assert likes.groupby(ratings["userId"]).mean().std() > 0.1  # like-rate varies by user
    assert ratings.duplicated(["userId", "timestamp"]).any()  # MovieLens-like ties
    assert movies["title"].str.contains(r"\(\d{4}\)$").mean() > 0.9

    again = synthesize(n_ratings=4000, n_users=100, n_movies=500, seed=3)
    pd.testing.assert_frame_equal(ratings, again[0])
    pd.testing.assert_frame_equal(movies, again[1])
    assert not ratings.equals(synthesize(n_ratings=4000, n_users=100, n_movies=500, seed=4)[0])


def test_synthesize_rejects_impossible_sizes() -> None:
    with pytest.raises(ValueError, match="unique"):
        synthesize(n_ratings=11, n_users=2, n_movies=5)


def test_cutoff_index_matches_the_definition() -> None:
    assert movielens.cutoff_index(10, 0.8) == 8
    assert movielens.cutoff_index(1, 0.8) == 0
