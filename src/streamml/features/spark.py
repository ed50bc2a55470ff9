"""Spark transforms of the feature job: the states each rating's replay needs, computed with windows, and the
replay itself over partitions of users (:mod:`streamml.features.backfill`), plus the online snapshot and the split.

"Strictly earlier" is a range frame ending at ``-1`` on the integer timestamp; "before it is applied" is a rows
frame ending at ``-1`` in replay order (timestamp, userId, movieId). Per movie both are windows partitioned by
``movieId``. The global sums avoid a single-partition window over every rating: ratings are bucketed by UTC day, a
window per day (parallel) sums the same day's earlier ratings, and a cumulative sum over the small per-day table
(one row per day) adds every earlier day. Sums of ratings are multiples of 0.5 and therefore exact in any order; the
movie's residual total is a running sum in replay order, the updater's own left fold.

The session is the caller's: nothing here creates one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

from streamml import names
from streamml.data.movielens import cutoff_index
from streamml.features import backfill
from streamml.features.snapshot_rows import USER_STATE_SCHEMA
from streamml.features.spec import GENRES, LIKE_THRESHOLD, PRIOR_MEAN, PRIOR_STRENGTH, YEAR_PATTERN

logger = logging.getLogger(__name__)

DAY_SECONDS = 86_400
KEY_COLUMNS = backfill.KEY_COLUMNS
_UNBOUNDED = Window.unboundedPreceding


def movie_metadata(movies: DataFrame) -> DataFrame:
    """``movieId``, ``genres`` (sorted indices into GENRES) and ``year`` (null when the title has none)."""
    parts = F.split(F.col("genres"), r"\|")
    flags = [F.coalesce(F.array_contains(parts, F.lit(name)), F.lit(False)) for name in GENRES]
    year_text = F.regexp_extract(F.coalesce(F.col("title"), F.lit("")), YEAR_PATTERN, 1)
    indices = F.filter(F.array(*[F.when(flag, F.lit(i)) for i, flag in enumerate(flags)]), lambda x: x.isNotNull())
    return movies.select(
        F.col("movieId").cast("long").alias("movieId"),
        indices.alias("genres"),
        F.when(year_text != "", year_text.cast("int")).alias("year"),
    )


def _typed(ratings: DataFrame) -> DataFrame:
    return ratings.select(
        F.col("userId").cast("long").alias("userId"),
        F.col("movieId").cast("long").alias("movieId"),
        F.col("rating").cast("double").alias("rating"),
        F.col("timestamp").cast("long").alias("timestamp"),
        (F.col("rating") >= F.lit(LIKE_THRESHOLD)).cast("long").alias("_like"),
    )


def _sum0(column: Column, window: WindowSpec | None = None, zero: float | int = 0) -> Column:
    aggregate = F.sum(column) if window is None else F.sum(column).over(window)
    return F.coalesce(aggregate, F.lit(zero))


def _global_mean(count: Column, total: Column) -> Column:
    # GlobalState.mean
    return F.when(count > 0, total / F.greatest(count, F.lit(1))).otherwise(F.lit(PRIOR_MEAN))


def replay_inputs(ratings: DataFrame, movies: DataFrame) -> DataFrame:
    """Every rating with the columns :func:`streamml.features.backfill.replay` reads
    (:data:`~streamml.features.backfill.INPUT_COLUMNS`), one row per rating, unordered."""
    rows = _typed(ratings).select(*KEY_COLUMNS, "_like")
    rating, like = F.col("rating"), F.col("_like")

    user_before = Window.partitionBy("userId").orderBy("timestamp", "movieId").rowsBetween(_UNBOUNDED, -1)
    rows = rows.select(
        "*",
        F.count(F.lit(1)).over(user_before).alias("_ua_count"),
        _sum0(rating, user_before, 0.0).alias("_ua_total"),
    )
    within_day = Window.partitionBy("_day")
    rows = _with_global_sums(
        rows, "ga", within_day.orderBy("timestamp", "userId", "movieId").rowsBetween(_UNBOUNDED, -1)
    )
    rows = _with_global_sums(rows, "g", within_day.orderBy("timestamp").rangeBetween(_UNBOUNDED, -1))
    # spec.apply_rating: the user's residual against its shrunk mean just before the rating (the movie's share).
    user_mean = (F.col("_ua_total") + F.lit(PRIOR_STRENGTH) * _global_mean(F.col("ga_count"), F.col("ga_total"))) / (
        F.col("_ua_count") + F.lit(PRIOR_STRENGTH)
    )
    rows = rows.withColumn("_user_residual", rating - user_mean)

    movie_before = Window.partitionBy("movieId").orderBy("timestamp", "userId").rowsBetween(_UNBOUNDED, -1)
    rows = rows.select(
        "*",
        F.count(F.lit(1)).over(movie_before).alias("ma_count"),
        _sum0(rating, movie_before, 0.0).alias("ma_total"),
        _sum0(like, movie_before).alias("ma_likes"),
        _sum0(F.col("_user_residual"), movie_before, 0.0).alias("_m_residual_before"),
    )
    movie_earlier = Window.partitionBy("movieId").orderBy("timestamp").rangeBetween(_UNBOUNDED, -1)
    first_of_second = Window.partitionBy("movieId", "timestamp").orderBy("userId")
    rows = rows.select(
        *KEY_COLUMNS,
        F.count(F.lit(1)).over(movie_earlier).alias("m_count"),
        _sum0(rating, movie_earlier, 0.0).alias("m_total"),
        _sum0(rating * rating, movie_earlier, 0.0).alias("m_total_sq"),
        _sum0(like, movie_earlier).alias("m_likes"),
        F.first("_m_residual_before").over(first_of_second).alias("m_residual"),
        F.coalesce(F.min("timestamp").over(movie_earlier), F.lit(backfill.NONE)).alias("m_first"),
        *backfill.GLOBAL_AT,
        "ma_count",
        "ma_total",
        "ma_likes",
        *backfill.GLOBAL_BEFORE,
        (F.col("_m_residual_before") + F.col("_user_residual")).alias(backfill.RESIDUAL_AFTER),
    )
    # The catalog joins last: the windows' shuffles carry no genres.
    meta = movie_metadata(movies).select(
        "movieId",
        # distinct genres: the sum of their bits is their union
        F.aggregate("genres", F.lit(0).cast("long"), lambda mask, g: mask + F.pow(2, g).cast("long")).alias(
            backfill.GENRE_MASK
        ),
        "year",
    )
    return rows.join(F.broadcast(meta), "movieId", "left").select(
        *rows.columns,
        F.coalesce(F.col(backfill.GENRE_MASK), F.lit(0).cast("long")).alias(backfill.GENRE_MASK),
        F.coalesce(F.col("year"), F.lit(backfill.NONE)).alias("year"),
    )


def replayed(
    ratings: DataFrame, movies: DataFrame, partitions: int, body: Callable[..., Any], schema: str
) -> DataFrame:
    """``body`` (:func:`~streamml.features.backfill.replay_to_parquet`, or :func:`~streamml.features.backfill.replay`
    with ``cutoff`` bound and :func:`~streamml.features.backfill.output_schema` for every column) over
    ``partitions`` partitions of users, each sorted by (userId, timestamp, movieId); ``schema`` is what it
    returns, one row per rating, unordered."""
    inputs = replay_inputs(ratings, movies).repartition(partitions, "userId")
    return inputs.sortWithinPartitions("userId", "timestamp", "movieId").mapInPandas(body, schema)


def _with_global_sums(rows: DataFrame, prefix: str, within_day: WindowSpec) -> DataFrame:
    """Add ``{prefix}_count``, ``{prefix}_total``, ``{prefix}_likes``: sums over every rating in ``within_day``'s
    frame of the row's day (a window partitioned by ``_day``) and every earlier day."""
    if "_day" not in rows.columns:
        rows = rows.withColumn("_day", _day(F.col("timestamp")))
    rows = rows.select(
        "*",
        F.count(F.lit(1)).over(within_day).alias("_d_count"),
        _sum0(F.col("rating"), within_day, 0.0).alias("_d_total"),
        _sum0(F.col("_like"), within_day).alias("_d_likes"),
    )
    daily = rows.groupBy("_day").agg(
        F.count(F.lit(1)).alias("count"), F.sum("rating").alias("total"), F.sum("_like").alias("likes")
    )
    # One row per day: a single-partition window is cheap here (about 10k rows for all of MovieLens).
    earlier_days = Window.orderBy("_day").rowsBetween(_UNBOUNDED, -1)
    before = daily.select(
        "_day",
        _sum0(F.col("count"), earlier_days).alias("_p_count"),
        _sum0(F.col("total"), earlier_days, 0.0).alias("_p_total"),
        _sum0(F.col("likes"), earlier_days).alias("_p_likes"),
    )
    return rows.join(F.broadcast(before), "_day").select(
        *[c for c in rows.columns if not c.startswith("_d_")],
        (F.col("_p_count") + F.col("_d_count")).alias(f"{prefix}_count"),
        (F.col("_p_total") + F.col("_d_total")).alias(f"{prefix}_total"),
        (F.col("_p_likes") + F.col("_d_likes")).alias(f"{prefix}_likes"),
    )


def user_snapshot(rows: DataFrame) -> DataFrame:
    """Each user's state after every rating before the cutoff, from :func:`features`' rows: the columns of
    :data:`~streamml.features.snapshot_rows.USER_SNAPSHOT_COLUMNS`."""
    first = backfill.SNAPSHOT_PREFIX + next(iter(USER_STATE_SCHEMA))
    return rows.where(F.col(first).isNotNull()).select(
        "userId", *[F.col(backfill.SNAPSHOT_PREFIX + name).alias(name) for name in USER_STATE_SCHEMA]
    )


def movie_snapshot(rows: DataFrame, movies: DataFrame, cutoff: int) -> DataFrame:
    """Every movie's state after the ratings before ``cutoff``, from :func:`features`' rows: the columns of
    :data:`~streamml.features.snapshot_rows.MOVIE_SNAPSHOT_COLUMNS`, one row per catalog movie (zero counts and no
    residuals when unrated) plus any rated movie missing from the catalog (no genres, no year)."""
    rating = F.col("rating")
    stats = (
        rows.where(F.col("timestamp") < cutoff)
        .groupBy("movieId")
        .agg(
            F.count(F.lit(1)).alias("count"),
            F.sum(rating).alias("total"),
            F.sum(rating * rating).alias("total_sq"),
            F.sum((rating >= F.lit(LIKE_THRESHOLD)).cast("long")).alias("likes"),
            # the running sum at the movie's last rating in replay order
            F.max_by(backfill.RESIDUAL_AFTER, F.struct("timestamp", "userId")).alias("residual_total"),
            F.min("timestamp").alias("first_ts"),
        )
    )
    return (
        movie_metadata(movies)
        .join(stats, "movieId", "full_outer")
        .select(
            "movieId",
            F.coalesce(F.col("genres"), F.array().cast("array<int>")).alias("genres"),
            "year",
            _or_zero(F.col("count"), 0).alias("count"),
            _or_zero(F.col("total"), 0.0).alias("total"),
            _or_zero(F.col("total_sq"), 0.0).alias("total_sq"),
            _or_zero(F.col("likes"), 0).alias("likes"),
            _or_zero(F.col("residual_total"), 0.0).alias("residual_total"),
            "first_ts",
        )
    )


def _or_zero(column: Column, zero: float | int) -> Column:
    return F.coalesce(column, F.lit(zero))


def globals_snapshot(history: DataFrame) -> DataFrame:
    """One row with :data:`~streamml.features.snapshot_rows.GLOBAL_SNAPSHOT_COLUMNS` over all of ``history``."""
    rating = F.col("rating").cast("double")
    return history.agg(
        F.count(F.lit(1)).alias("count"),
        _sum0(rating, zero=0.0).alias("total"),
        _sum0((rating >= F.lit(LIKE_THRESHOLD)).cast("long")).alias("likes"),
    )


def _day(timestamp: Column) -> Column:
    return F.floor(timestamp / F.lit(DAY_SECONDS)).cast("long")


def cutoff_timestamp(ratings: DataFrame, quantile: float = names.SPLIT_QUANTILE) -> int:
    """The split cutoff, identical to :func:`streamml.data.movielens.time_split`'s."""
    index = cutoff_index(ratings.count(), quantile)
    # Not orderBy().offset(index): that keeps the index + 1 smallest rows in one task (a 2g heap ran out at 25M).
    # Count per UTC day (a small table), then sort only the day that holds the index.
    stamps = ratings.select(F.col("timestamp").cast("long").alias("ts")).withColumn("_day", _day(F.col("ts")))
    earlier = 0
    for day in stamps.groupBy("_day").count().orderBy("_day").collect():
        if earlier + day["count"] > index:
            break
        earlier += day["count"]
    row = stamps.where(F.col("_day") == day["_day"]).orderBy("ts").offset(index - earlier).limit(1).first()
    if row is None:
        raise ValueError("cannot split an empty ratings frame")
    return int(row["ts"])


def time_split(ratings: DataFrame, quantile: float = names.SPLIT_QUANTILE) -> tuple[DataFrame, DataFrame, int]:
    """``(history, stream, cutoff_ts)``: ``timestamp < cutoff_ts`` and ``timestamp >= cutoff_ts``."""
    cutoff = cutoff_timestamp(ratings, quantile)
    logger.info("time split quantile=%s cutoff_ts=%d", quantile, cutoff)
    return ratings.where(F.col("timestamp") < cutoff), ratings.where(F.col("timestamp") >= cutoff), cutoff
