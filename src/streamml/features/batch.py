"""The batch feature job: raw MovieLens snapshot in MinIO -> time split -> point-in-time features (every user's
ratings replayed in Spark's Python workers against the movie and global states Spark's windows give each rating, see
:mod:`streamml.features.backfill`) and the online snapshot as parquet under
``s3a://features/v{n}/``. Runs inside a Spark driver (see ``spark-jobs/build_features.py``).

Layout of a feature version ``n``: ``history/`` and ``stream/`` (one row per rating, features + label, written by
the replay tasks themselves with pyarrow, one file per task and part; files in the replay's order, by user, so readers
needing time order sort by (timestamp, userId, movieId)),
``users/`` and ``movies/`` (the online snapshot as of the cutoff), ``_manifest.json`` (written last: snapshot,
cutoff, row counts, feature names, global sums).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from streamml import names
from streamml.config import Settings
from streamml.data.ingest import RAW_PREFIX
from streamml.errors import StreamMLError
from streamml.features import packing, spec
from streamml.stores.objects import ObjectStore, s3_filesystem

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

VERSIONS_KEY = "versions.json"
PARTS = ("history", "stream", "users", "movies")
ROWS_PER_TASK = 250_000
"""At most this many ratings per replay task (more partitions than ``spark.sql.shuffle.partitions`` when needed)."""


def manifest_key(version: int) -> str:
    return f"v{version}/_manifest.json"


def allocate_version(settings: Settings, snapshot: str, quantile: float) -> int:
    """The feature version of (snapshot, quantile, feature definition): the same inputs always get the same number,
    so a rerun overwrites its own version; new inputs get the next number."""
    store = ObjectStore(settings.minio, names.BUCKET_FEATURES)
    versions: dict[str, int] = store.get_json(VERSIONS_KEY) if store.exists(VERSIONS_KEY) else {}
    key = f"{snapshot}:q={quantile}:spec={packing.STATE_FORMAT}:{spec.N_FEATURES}"
    if key not in versions:
        versions[key] = max(versions.values(), default=0) + 1
        store.put_json(VERSIONS_KEY, versions)
    return versions[key]


def list_versions(settings: Settings) -> list[dict[str, Any]]:
    """Every complete feature version (one with a manifest): its inputs and row counts."""
    store = ObjectStore(settings.minio, names.BUCKET_FEATURES)
    allocated = store.get_json(VERSIONS_KEY) if store.exists(VERSIONS_KEY) else {}
    out = []
    for version in sorted(allocated.values()):
        if store.exists(manifest_key(version)):
            manifest = store.get_json(manifest_key(version))
            keep = ("snapshot", "cutoff_ts", "quantile", "rows")
            out.append({"version": version, **{k: manifest[k] for k in keep if k in manifest}})
    return out


def read_manifest(settings: Settings, version: int) -> dict[str, Any]:
    store = ObjectStore(settings.minio, names.BUCKET_FEATURES)
    if not store.exists(manifest_key(version)):
        raise StreamMLError(f"feature version {version} is incomplete or missing (no {manifest_key(version)})")
    return dict(store.get_json(manifest_key(version)))


def read_part(settings: Settings, version: int, part: str, columns: list[str] | None = None) -> Any:
    """One part (history, stream, users, movies) of a feature version as a pyarrow Table."""
    import pyarrow.parquet as pq

    if part not in PARTS:
        raise StreamMLError(f"unknown feature part {part!r}; parts: {', '.join(PARTS)}")
    path = f"{names.BUCKET_FEATURES}/v{version}/{part}"
    return pq.read_table(path, filesystem=s3_filesystem(settings.minio), columns=columns)


def read_raw(spark: SparkSession, snapshot: str) -> tuple[DataFrame, DataFrame]:
    base = f"s3a://{names.BUCKET_RAW}/{RAW_PREFIX}/{snapshot}/"
    ratings = spark.read.csv(
        base + names.RATINGS_FILE, header=True, schema="userId LONG, movieId LONG, rating DOUBLE, timestamp LONG"
    )
    movies = spark.read.csv(
        base + names.MOVIES_FILE, header=True, schema="movieId LONG, title STRING, genres STRING", quote='"', escape='"'
    )
    return ratings, movies


def build(spark: SparkSession, settings: Settings, snapshot: str, version: int, quantile: float) -> dict[str, Any]:
    """Run the split and the features for ``snapshot`` into feature version ``version``; return the manifest."""
    from pyspark import StorageLevel

    from streamml.features import backfill  # numba and pandas: only the job's driver needs them
    from streamml.features import spark as fs

    store = ObjectStore(settings.minio, names.BUCKET_FEATURES)
    store.delete_prefix(f"v{version}/")  # a rerun replaces its own version whole
    ratings, movies = read_raw(spark, snapshot)
    ratings = ratings.cache()
    history, _, cutoff = fs.time_split(ratings, quantile)
    partitions = max(int(spark.conf.get("spark.sql.shuffle.partitions") or 8), -(-ratings.count() // ROWS_PER_TASK))
    # The replay writes history/ and stream/ itself (backfill.replay_to_parquet) and hands Spark the columns the
    # snapshots read, kept on local disk: the heap holds none of them.
    base = f"{names.BUCKET_FEATURES}/v{version}"
    body = partial(backfill.replay_to_parquet, cutoff=cutoff, filesystem=s3_filesystem(settings.minio), base=base)
    rows = fs.replayed(ratings, movies, partitions, body, backfill.output_schema(backfill.STATE_COLUMNS))
    rows = rows.persist(StorageLevel.DISK_ONLY)
    replayed = rows.count()  # runs every replay task to its end, so each has uploaded its files
    fs.user_snapshot(rows).write.mode("overwrite").parquet(f"s3a://{base}/users")
    fs.movie_snapshot(rows, movies, cutoff).write.mode("overwrite").parquet(f"s3a://{base}/movies")
    glob = fs.globals_snapshot(history).first()
    counts = {part: spark.read.parquet(f"s3a://{base}/{part}").count() for part in PARTS}
    manifest = {
        "version": version,
        "snapshot": snapshot,
        "quantile": quantile,
        "cutoff_ts": cutoff,
        "rows": counts,
        "ratings": ratings.count(),
        "feature_names": list(spec.FEATURE_NAMES),
        "globals": glob.asDict() if glob else {},
    }
    if not counts["history"] + counts["stream"] == replayed == manifest["ratings"]:
        raise StreamMLError(
            f"the feature job lost rows: {manifest['ratings']} ratings, {replayed} replayed, "
            f"{counts['history']} + {counts['stream']} written"
        )
    store.put_json(manifest_key(version), manifest)
    logger.info("features version=%d snapshot=%s cutoff=%d rows=%s", version, snapshot, cutoff, counts)
    return manifest
