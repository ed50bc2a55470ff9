"""The feature job's rows and snapshots (every user replayed in Spark's Python workers against the movie and global
states of Spark's windows) equal the incremental definition in spec.py, row by row and bit for bit."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import LocalFileSystem
from pyspark.sql import DataFrame, SparkSession

from streamml.data.movielens import sort_ratings, synthesize, time_split
from streamml.features import backfill, packing, snapshot_rows, spec
from streamml.features.materialize import snapshot_blobs
from streamml.features.spark import replayed
from streamml.features.spec import FEATURE_NAMES, FeatureState

pytestmark = [pytest.mark.spark, pytest.mark.slow]

RATINGS_SCHEMA = "userId long, movieId long, rating double, timestamp long"
MOVIES_SCHEMA = "movieId long, title string, genres string"


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("streamml-feature-parity")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    ratings, movies = synthesize(n_ratings=3000, n_users=120, n_movies=400, seed=21)
    extra_movies = pd.DataFrame(
        {
            "movieId": [900_001, 900_002],
            "title": ["No Year Movie", "Range (2006\u20132007)"],
            "genres": ["(no genres listed)", "Sci-Fi|Film-Noir|Made-Up"],
        }
    )
    movies = pd.concat([movies, extra_movies], ignore_index=True)
    # Cross-user ties: several users rate the same movies in the same second, twice, plus a late rating.
    popular = ratings["movieId"].value_counts().index[:2].tolist()
    first_ts = int(ratings["timestamp"].quantile(0.5))
    ties = [
        (user, movie, rating, ts)
        for ts in (first_ts, first_ts + 1)
        for user, rating in ((9001, 4.5), (9002, 2.0), (9003, 4.0))
        for movie in (*popular, 900_001, 900_002)
    ]
    ties.append((9001, 900_002, 5.0, first_ts + 10_000))
    extra = pd.DataFrame(ties, columns=["userId", "movieId", "rating", "timestamp"])
    ratings = pd.concat([ratings, extra], ignore_index=True)
    assert not ratings.duplicated(["userId", "movieId", "timestamp"]).any()
    return ratings, movies


def _frames(spark: SparkSession, ratings: pd.DataFrame, movies: pd.DataFrame) -> tuple[DataFrame, DataFrame]:
    rating_rows = list(ratings[["userId", "movieId", "rating", "timestamp"]].itertuples(index=False, name=None))
    movie_rows = list(movies[["movieId", "title", "genres"]].itertuples(index=False, name=None))
    return (
        spark.createDataFrame([tuple(map(_py, row)) for row in rating_rows], RATINGS_SCHEMA),
        spark.createDataFrame([tuple(map(_py, row)) for row in movie_rows], MOVIES_SCHEMA),
    )


def _py(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


@pytest.fixture(scope="module")
def job(
    spark: SparkSession, data: tuple[pd.DataFrame, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> tuple[DataFrame, Path, int]:
    """The feature job's replay as ``batch.build`` runs it, writing its parts to local files: its state rows
    (cached), the directory of ``history/`` and ``stream/``, and the cutoff."""
    ratings, movies = data
    _, _, cutoff = time_split(ratings, 0.8)
    base = tmp_path_factory.mktemp("features")
    for part in backfill.FEATURE_PARTS:
        (base / part).mkdir()
    # row groups of 50 rows or more: each file holds several
    body = partial(
        backfill.replay_to_parquet, cutoff=cutoff, filesystem=LocalFileSystem(), base=str(base), row_group_rows=50
    )
    spark_ratings, spark_movies = _frames(spark, ratings, movies)
    # Arrow batches of 7 rows: users and seconds span batches.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "7")
    try:
        schema = backfill.output_schema(backfill.STATE_COLUMNS)
        rows = replayed(spark_ratings, spark_movies, 3, body, schema).cache()
        assert rows.count() == len(ratings)
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    return rows, base, cutoff


def test_spark_features_equal_incremental_features(
    data: tuple[pd.DataFrame, pd.DataFrame], job: tuple[DataFrame, Path, int]
) -> None:
    ratings, movies = data
    ordered = sort_ratings(ratings)
    expected = spec.point_in_time_features(FeatureState.from_movies(movies), ordered)
    _, base, cutoff = job

    parts = {}
    for part in backfill.FEATURE_PARTS:
        assert sorted(f.name for f in (base / part).iterdir()) == [f"part-{i:05d}.parquet" for i in range(3)]
        parts[part] = pq.read_table(base / part)
        assert parts[part].column_names == list(backfill.FEATURE_COLUMNS)
        assert parts[part].schema.field(spec.LABEL).type == pa.int32()
        assert pq.ParquetFile(next((base / part).iterdir())).metadata.num_row_groups > 1
    assert pc.all(pc.less(parts["history"]["timestamp"], cutoff)).as_py()
    assert pc.all(pc.greater_equal(parts["stream"]["timestamp"], cutoff)).as_py()
    rows = pa.concat_tables(parts.values()).to_pylist()
    assert len(rows) == len(ratings)
    by_key = {(r["userId"], r["movieId"], r["timestamp"]): r for r in rows}
    keys = list(zip(ordered["userId"], ordered["movieId"], ordered["timestamp"], strict=True))
    actual = np.array([[by_key[key][name] for name in FEATURE_NAMES] for key in keys], dtype=np.float64)
    labels = [by_key[key][spec.LABEL] for key in keys]

    np.testing.assert_array_equal(actual, expected)
    assert labels == [spec.label(r) for r in ordered["rating"]]
    # The data exercises what matters: ties, cold starts, unknown years, the no-genres marker.
    named = pd.DataFrame(actual, columns=list(FEATURE_NAMES))
    assert (named["movie_has_year"] == 0).any() and (named["genre_no_genres_listed"] == 1).any()
    assert (named["user_count"] == 0).any() and (named["user_genre_affinity"] != 0).any()
    assert (named["movie_residual_mean"] != 0).any() and (named["user_recent_residual_r03"] != 0).any()


def test_spark_snapshot_equals_incremental_snapshot(
    spark: SparkSession, data: tuple[pd.DataFrame, pd.DataFrame], job: tuple[DataFrame, Path, int]
) -> None:
    from streamml.features.spark import (
        cutoff_timestamp,
        globals_snapshot,
        movie_snapshot,
        user_snapshot,
    )
    from streamml.features.spark import time_split as spark_time_split

    ratings, movies = data
    history, stream, cutoff = time_split(ratings, 0.8)
    state = FeatureState.from_movies(movies)
    spec.point_in_time_features(state, history)
    users, movie_blobs, globals_ = packing.snapshot(state)

    spark_ratings, spark_movies = _frames(spark, ratings, movies)
    assert cutoff_timestamp(spark_ratings, 0.8) == cutoff
    spark_history, spark_stream, spark_cutoff = spark_time_split(spark_ratings, 0.8)
    assert (spark_cutoff, spark_history.count(), spark_stream.count()) == (cutoff, len(history), len(stream))

    rows, _, job_cutoff = job
    assert job_cutoff == cutoff
    user_rows = user_snapshot(rows).collect()
    spark_users = {r["userId"]: packing.pack_user(snapshot_rows.user_state_from_row(r.asDict())) for r in user_rows}
    assert spark_users == users

    movie_rows = movie_snapshot(rows, spark_movies, cutoff).collect()
    spark_movie_blobs = {
        r["movieId"]: packing.pack_movie(snapshot_rows.movie_state_from_row(r.asDict())) for r in movie_rows
    }
    assert spark_movie_blobs == movie_blobs
    # materialize packs the same blobs column by column from the parts' Arrow tables (batches of 7: sliced lists)
    assert dict(snapshot_blobs(user_snapshot(rows).toArrow(), "users", batch_rows=7)) == users
    assert dict(snapshot_blobs(movie_snapshot(rows, spark_movies, cutoff).toArrow(), "movies", batch_rows=7)) == (
        movie_blobs
    )
    assert any(packing.unpack_movie(blob).count == 0 for blob in movie_blobs.values())  # unrated catalog movies

    (global_row,) = globals_snapshot(spark_history).collect()
    assert snapshot_rows.globals_from_row(global_row.asDict()) == globals_

    # The first stream row, scored from the snapshot blobs, gets its point-in-time features.
    first = stream.iloc[0]
    vector, _ = spec.features_from_states(
        packing.unpack_user(users[first["userId"]]) if first["userId"] in users else None,
        packing.unpack_movie(movie_blobs[first["movieId"]]),
        globals_,
        int(first["timestamp"]),
    )
    full = spec.point_in_time_features(FeatureState.from_movies(movies), sort_ratings(ratings))
    assert vector == full[len(history)].tolist()
