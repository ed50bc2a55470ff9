"""Spark transforms computing :mod:`streamml.features.spec`'s windowed aggregates for every rating row, point in
time (the sequential families come from :mod:`streamml.features.backfill` and are joined by :func:`with_sequential`).

Every transform is ``DataFrame -> DataFrame`` and mirrors the scalar arithmetic of
:func:`streamml.features.spec.features_from_states` operation by operation, so the two agree to the last bit
(sums of ratings are multiples of 0.25 and therefore exact in any order).

"Strictly earlier" is a range frame ending at ``-1`` on the integer timestamp: per user
(``partitionBy(userId)``) and per movie (``partitionBy(movieId)``). The global sums avoid a single-partition
window over every rating: ratings are bucketed by UTC day, a window per day (parallel) sums the same day's strictly
earlier ratings, and a cumulative sum over the small per-day table (one row per day) adds every earlier day.

The session is the caller's: nothing here creates one.
"""

from __future__ import annotations

import logging
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window, WindowSpec
from pyspark.sql import functions as F

from streamml import names
from streamml.data.movielens import cutoff_index
from streamml.features.backfill import RATING_KEY, Backfill
from streamml.features.packing import SEQUENTIAL_MOVIE_SCHEMA, SEQUENTIAL_USER_SCHEMA
from streamml.features.spec import (
    AGGREGATE_FEATURES,
    DEFAULT_MOVIE_YEAR,
    FEATURE_NAMES,
    GENRE_FEATURES,
    GENRE_PRIOR_STRENGTH,
    GENRES,
    LABEL,
    LIKE_THRESHOLD,
    N_GENRES,
    NO_PREVIOUS_RATING,
    PRIOR_LIKE_RATE,
    PRIOR_MEAN,
    PRIOR_STRENGTH,
    SEQUENTIAL_FEATURES,
    YEAR_PATTERN,
)

logger = logging.getLogger(__name__)

DAY_SECONDS = 86_400
KEY_COLUMNS: tuple[str, ...] = ("userId", "movieId", "rating", "timestamp")
"""Columns of a ratings frame, passed through to the features frame ahead of ``label`` and the features."""

_EARLIER = (Window.unboundedPreceding, -1)


def _flag(index: int) -> str:
    return f"_g{index}"


def movie_metadata(movies: DataFrame) -> DataFrame:
    """``movieId``, ``genres`` (sorted indices into GENRES), ``year`` (null when the title has none) and one
    0/1 column ``_g{i}`` per genre."""
    parts = F.split(F.col("genres"), r"\|")
    flags = [F.coalesce(F.array_contains(parts, F.lit(name)), F.lit(False)) for name in GENRES]
    year_text = F.regexp_extract(F.coalesce(F.col("title"), F.lit("")), YEAR_PATTERN, 1)
    indices = F.filter(F.array(*[F.when(flag, F.lit(i)) for i, flag in enumerate(flags)]), lambda x: x.isNotNull())
    return movies.select(
        F.col("movieId").cast("long").alias("movieId"),
        indices.alias("genres"),
        F.when(year_text != "", year_text.cast("int")).alias("year"),
        *[flag.cast("long").alias(_flag(i)) for i, flag in enumerate(flags)],
    )


def _with_movie_flags(ratings: DataFrame, movies: DataFrame) -> DataFrame:
    meta = movie_metadata(movies)
    joined = ratings.select(
        F.col("userId").cast("long").alias("userId"),
        F.col("movieId").cast("long").alias("movieId"),
        F.col("rating").cast("double").alias("rating"),
        F.col("timestamp").cast("long").alias("timestamp"),
    ).join(F.broadcast(meta), "movieId", "left")
    return joined.select(
        *KEY_COLUMNS,
        "year",
        (F.col("rating") >= F.lit(LIKE_THRESHOLD)).cast("long").alias("_like"),
        *[F.coalesce(F.col(_flag(i)), F.lit(0)).cast("long").alias(_flag(i)) for i in range(N_GENRES)],
    )


def _safe(count: Column) -> Column:
    # Denominators inside branches that already require count > 0; guarded because ANSI mode raises on x / 0.
    return F.greatest(count, F.lit(1))


def _std(count: Column, total: Column, total_sq: Column) -> Column:
    variance = (count * total_sq - total * total) / _safe(count * count)
    return F.when((count >= 2) & (variance > 0.0), F.sqrt(variance)).otherwise(F.lit(0.0))


def _sum0(column: Column, window: WindowSpec | None = None, zero: float | int = 0) -> Column:
    aggregate = F.sum(column) if window is None else F.sum(column).over(window)
    return F.coalesce(aggregate, F.lit(zero))


def build_features(ratings: DataFrame, movies: DataFrame) -> DataFrame:
    """Point-in-time windowed aggregates of every rating row.

    Output: ``userId, movieId, rating, timestamp, label`` then :data:`~streamml.features.spec.AGGREGATE_FEATURES`
    (all double), one row per input rating, unordered.
    """
    rows = _with_movie_flags(ratings, movies)
    flags = [F.col(_flag(i)) for i in range(N_GENRES)]
    rating = F.col("rating")

    by_user = Window.partitionBy("userId").orderBy("timestamp").rangeBetween(*_EARLIER)
    rows = rows.select(
        "*",
        F.count(F.lit(1)).over(by_user).alias("_u_count"),
        _sum0(rating, by_user, 0.0).alias("_u_total"),
        _sum0(rating * rating, by_user, 0.0).alias("_u_total_sq"),
        _sum0(F.col("_like"), by_user).alias("_u_likes"),
        F.max("timestamp").over(by_user).alias("_u_last"),
        *[_sum0(flag, by_user).alias(f"_ugc{i}") for i, flag in enumerate(flags)],
        *[_sum0(flag * rating, by_user, 0.0).alias(f"_ugt{i}") for i, flag in enumerate(flags)],
    )

    by_movie = Window.partitionBy("movieId").orderBy("timestamp").rangeBetween(*_EARLIER)
    rows = rows.select(
        "*",
        F.count(F.lit(1)).over(by_movie).alias("_m_count"),
        _sum0(rating, by_movie, 0.0).alias("_m_total"),
        _sum0(rating * rating, by_movie, 0.0).alias("_m_total_sq"),
        _sum0(F.col("_like"), by_movie).alias("_m_likes"),
    )
    rows = _with_global_sums(rows)

    g_count = F.col("_g_count")
    global_mean = F.when(g_count > 0, F.col("_g_total") / _safe(g_count)).otherwise(F.lit(PRIOR_MEAN))
    global_like_rate = F.when(g_count > 0, F.col("_g_likes") / _safe(g_count)).otherwise(F.lit(PRIOR_LIKE_RATE))
    k = F.lit(PRIOR_STRENGTH)

    u_count = F.col("_u_count")
    user_mean = F.col("_u_total") / _safe(u_count)
    n_genres = reduce(lambda a, b: a + b, flags)
    affinity_terms = [
        F.when(
            flags[i] == 1,
            (F.col(f"_ugt{i}") - F.col(f"_ugc{i}") * user_mean) / (F.col(f"_ugc{i}") + F.lit(GENRE_PRIOR_STRENGTH)),
        ).otherwise(F.lit(0.0))
        for i in range(N_GENRES)
    ]
    share_terms = [
        F.when(flags[i] == 1, F.col(f"_ugc{i}") / _safe(u_count)).otherwise(F.lit(0.0)) for i in range(N_GENRES)
    ]
    has_profile = (u_count > 0) & (n_genres > 0)
    affinity = reduce(lambda a, b: a + b, affinity_terms, F.lit(0.0))
    share = reduce(lambda a, b: a + b, share_terms, F.lit(0.0))

    m_count = F.col("_m_count")
    features: dict[str, Column] = {
        "user_count": u_count,
        "user_mean_shrunk": (F.col("_u_total") + k * global_mean) / (u_count + k),
        "user_like_rate": (F.col("_u_likes") + k * global_like_rate) / (u_count + k),
        "user_rating_std": _std(u_count, F.col("_u_total"), F.col("_u_total_sq")),
        "user_genre_affinity": F.when(has_profile, affinity / _safe(n_genres)).otherwise(F.lit(0.0)),
        "user_genre_share": F.when(has_profile, share / _safe(n_genres)).otherwise(F.lit(0.0)),
        "seconds_since_user_prev_rating": F.when(F.col("_u_last").isNull(), F.lit(NO_PREVIOUS_RATING)).otherwise(
            F.greatest(F.col("timestamp") - F.col("_u_last"), F.lit(0))
        ),
        "movie_count": m_count,
        "movie_mean_shrunk": (F.col("_m_total") + k * global_mean) / (m_count + k),
        "movie_like_rate": (F.col("_m_likes") + k * global_like_rate) / (m_count + k),
        "movie_rating_std": _std(m_count, F.col("_m_total"), F.col("_m_total_sq")),
        "movie_year": F.coalesce(F.col("year"), F.lit(DEFAULT_MOVIE_YEAR)),
        "movie_has_year": F.col("year").isNotNull(),
        **{name: flags[i] for i, name in enumerate(GENRE_FEATURES)},
    }
    missing = set(AGGREGATE_FEATURES) ^ set(features)
    if missing:  # a guard against the two definitions drifting apart
        raise RuntimeError(f"Spark features out of sync with spec.AGGREGATE_FEATURES: {sorted(missing)}")
    return rows.select(
        *KEY_COLUMNS,
        F.col("_like").cast("int").alias(LABEL),
        *[features[name].cast("double").alias(name) for name in AGGREGATE_FEATURES],
    )


def with_sequential(spark: SparkSession, rows: DataFrame, backfill: Backfill) -> DataFrame:
    """:func:`build_features` rows joined with the backfill's sequential families on the rating id:
    ``KEY_COLUMNS, label`` then :data:`~streamml.features.spec.FEATURE_NAMES`."""
    sequential = ", ".join(f"{name} double" for name in SEQUENTIAL_FEATURES)
    backfill_rows = spark.createDataFrame(backfill.rows, f"userId long, movieId long, timestamp long, {sequential}")
    return rows.join(backfill_rows, list(RATING_KEY), "left").select(*KEY_COLUMNS, LABEL, *FEATURE_NAMES)


def with_sequential_state(
    spark: SparkSession, users: DataFrame, movies: DataFrame, backfill: Backfill
) -> tuple[DataFrame, DataFrame]:
    """The user and movie snapshots joined with the backfill's state at the cutoff (a movie the backfill never saw
    has no residuals)."""
    user_schema = ", ".join(f"{name} {kind}" for name, kind in SEQUENTIAL_USER_SCHEMA.items())
    movie_schema = ", ".join(f"{name} {kind}" for name, kind in SEQUENTIAL_MOVIE_SCHEMA.items())
    backfill_users = spark.createDataFrame(backfill.users, f"userId long, {user_schema}")
    backfill_movies = spark.createDataFrame(backfill.movies, f"movieId long, {movie_schema}")
    users = users.join(backfill_users, "userId", "left").select(*users.columns, *SEQUENTIAL_USER_SCHEMA)
    movies = movies.join(backfill_movies, "movieId", "left").select(
        *movies.columns, _or_zero(F.col("residual_total"), 0.0).alias("residual_total"), "first_ts"
    )
    return users, movies


def _with_global_sums(rows: DataFrame) -> DataFrame:
    """Add ``_g_count``, ``_g_total``, ``_g_likes``: sums over every rating strictly earlier than the row."""
    rows = rows.withColumn("_day", F.floor(F.col("timestamp") / F.lit(DAY_SECONDS)).cast("long"))
    within_day = Window.partitionBy("_day").orderBy("timestamp").rangeBetween(*_EARLIER)
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
    earlier_days = Window.orderBy("_day").rowsBetween(Window.unboundedPreceding, -1)
    before = daily.select(
        "_day",
        _sum0(F.col("count"), earlier_days).alias("_p_count"),
        _sum0(F.col("total"), earlier_days, 0.0).alias("_p_total"),
        _sum0(F.col("likes"), earlier_days).alias("_p_likes"),
    )
    return rows.join(F.broadcast(before), "_day").select(
        "*",
        (F.col("_p_count") + F.col("_d_count")).alias("_g_count"),
        (F.col("_p_total") + F.col("_d_total")).alias("_g_total"),
        (F.col("_p_likes") + F.col("_d_likes")).alias("_g_likes"),
    )


def user_snapshot(history: DataFrame, movies: DataFrame) -> DataFrame:
    """Each user's state after every rating of ``history``: the columns of
    :data:`~streamml.features.packing.USER_SNAPSHOT_COLUMNS` (``genre_count``/``genre_total`` are arrays in GENRES
    order). The movies frame supplies the genres of the rated movies."""
    rows = _with_movie_flags(history, movies)
    rating = F.col("rating")
    flags = [F.col(_flag(i)) for i in range(N_GENRES)]
    return rows.groupBy("userId").agg(
        F.count(F.lit(1)).alias("count"),
        F.sum(rating).alias("total"),
        F.sum(rating * rating).alias("total_sq"),
        F.sum("_like").alias("likes"),
        F.max("timestamp").alias("last_ts"),
        F.array(*[F.sum(flag) for flag in flags]).alias("genre_count"),
        F.array(*[F.sum(flag * rating).cast("double") for flag in flags]).alias("genre_total"),
    )


def movie_snapshot(history: DataFrame, movies: DataFrame) -> DataFrame:
    """Every movie's state after ``history``: the columns of
    :data:`~streamml.features.packing.MOVIE_SNAPSHOT_COLUMNS`, one row per catalog movie (zero counts when unrated)
    plus any rated movie missing from the catalog (no genres, no year)."""
    rows = _with_movie_flags(history, movies)
    rating = F.col("rating")
    stats = rows.groupBy("movieId").agg(
        F.count(F.lit(1)).alias("count"),
        F.sum(rating).alias("total"),
        F.sum(rating * rating).alias("total_sq"),
        F.sum("_like").alias("likes"),
    )
    meta = movie_metadata(movies).select("movieId", "genres", "year")
    return meta.join(stats, "movieId", "full_outer").select(
        "movieId",
        F.coalesce(F.col("genres"), F.array().cast("array<int>")).alias("genres"),
        "year",
        _or_zero(F.col("count"), 0).alias("count"),
        _or_zero(F.col("total"), 0.0).alias("total"),
        _or_zero(F.col("total_sq"), 0.0).alias("total_sq"),
        _or_zero(F.col("likes"), 0).alias("likes"),
    )


def _or_zero(column: Column, zero: float | int) -> Column:
    return F.coalesce(column, F.lit(zero))


def globals_snapshot(history: DataFrame) -> DataFrame:
    """One row with :data:`~streamml.features.packing.GLOBAL_SNAPSHOT_COLUMNS` over all of ``history``."""
    rating = F.col("rating").cast("double")
    return history.agg(
        F.count(F.lit(1)).alias("count"),
        _sum0(rating, zero=0.0).alias("total"),
        _sum0((rating >= F.lit(LIKE_THRESHOLD)).cast("long")).alias("likes"),
    )


def cutoff_timestamp(ratings: DataFrame, quantile: float = names.SPLIT_QUANTILE) -> int:
    """The split cutoff, identical to :func:`streamml.data.movielens.time_split`'s."""
    index = cutoff_index(ratings.count(), quantile)
    row = ratings.select(F.col("timestamp").cast("long").alias("ts")).orderBy("ts").offset(index).limit(1).first()
    if row is None:
        raise ValueError("cannot split an empty ratings frame")
    return int(row["ts"])


def time_split(ratings: DataFrame, quantile: float = names.SPLIT_QUANTILE) -> tuple[DataFrame, DataFrame, int]:
    """``(history, stream, cutoff_ts)``: ``timestamp < cutoff_ts`` and ``timestamp >= cutoff_ts``."""
    cutoff = cutoff_timestamp(ratings, quantile)
    logger.info("time split quantile=%s cutoff_ts=%d", quantile, cutoff)
    return ratings.where(F.col("timestamp") < cutoff), ratings.where(F.col("timestamp") >= cutoff), cutoff
