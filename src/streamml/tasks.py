"""The steps of the ``movielens_training`` pipeline, each one call with a small JSON-able result.

The Airflow DAG and the CLI both call these; each is idempotent (a rerun overwrites the same snapshot/version).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from streamml import names
from streamml.config import Settings
from streamml.paths import BUILD_FEATURES_SCRIPT, repo_root

logger = logging.getLogger(__name__)


def ingest(settings: Settings, directory: Path | None = None) -> dict[str, Any]:
    """Validate MovieLens and upload it to MinIO as a complete raw snapshot."""
    from streamml.data.ingest import ingest as run

    return asdict(run(settings, directory))


def validate(settings: Settings, snapshot: str) -> dict[str, Any]:
    """Check the raw snapshot in MinIO is complete and intact."""
    from streamml.data.ingest import verify

    return asdict(verify(settings, snapshot))


def build_features(settings: Settings, snapshot: str, quantile: float = names.SPLIT_QUANTILE) -> dict[str, Any]:
    """Split and build features with spark-submit on the configured master; return the manifest."""
    from streamml.features.batch import allocate_version, read_manifest
    from streamml.spark_session import run_submit

    version = allocate_version(settings, snapshot, quantile)
    script = repo_root() / BUILD_FEATURES_SCRIPT
    run_submit(settings, script, "--snapshot", snapshot, "--version", str(version), "--quantile", str(quantile))
    return read_manifest(settings, version)


def materialize(settings: Settings, version: int) -> dict[str, Any]:
    """Load the version's online snapshot into Redis and switch ``feat:current`` to it."""
    from streamml.features.materialize import materialize as run

    return run(settings, version)


def train(settings: Settings, feature_version: int, model: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train, evaluate in both modes, log to MLflow and register the new version as challenger.

    ``model`` is a :class:`~streamml.models.train.ModelConfig` as a dict, e.g. ``{"model_type": "logreg",
    "logreg": {"C": 0.5}}``; empty means the defaults.
    """
    from streamml.models.train import ModelConfig, run_training

    return run_training(settings, feature_version, ModelConfig.model_validate(model or {}))


def promote(settings: Settings, version: int, margin: float | None = None) -> dict[str, Any]:
    """Make ``version`` champion if it beats the champion's streaming AUC by ``margin`` (or there is none)."""
    from streamml.models.registry import DEFAULT_MARGIN, promote_if_better

    return promote_if_better(settings, version, DEFAULT_MARGIN if margin is None else margin)


def batch_score(settings: Settings, feature_version: int | None = None) -> dict[str, Any]:
    """Score the whole stream period with @champion (offline batch inference) into
    ``s3://features/v<n>/scores/<model>-v<version>.parquet``; return counts."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from streamml import names
    from streamml.errors import StreamMLError
    from streamml.features import spec
    from streamml.features.batch import read_part, s3_filesystem
    from streamml.models.pyfunc import load_scorer
    from streamml.models.registry import champion_version
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client

    version = feature_version or RedisFeatureStore(redis_client(settings.redis)).current_version()
    model_version = champion_version(settings)
    if version is None or model_version is None:
        raise StreamMLError("batch scoring needs a feature version and a @champion; run movielens_training first")
    columns = ["userId", "movieId", "timestamp", "label", *spec.FEATURE_NAMES]
    table = read_part(settings, version, "stream", columns=columns)
    matrix = np.column_stack([table.column(name).to_numpy() for name in spec.FEATURE_NAMES]).astype(np.float64)
    scores = load_scorer(f"models:/{names.MODEL_NAME}/{model_version}", settings.mlflow.tracking_uri)(matrix)
    out = pa.table(
        {
            "userId": table.column("userId"),
            "movieId": table.column("movieId"),
            "timestamp": table.column("timestamp"),
            "label": table.column("label"),
            "score": pa.array(scores),
        }
    )
    key = f"v{version}/scores/{names.MODEL_NAME}-v{model_version}.parquet"
    pq.write_table(out, f"{names.BUCKET_FEATURES}/{key}", filesystem=s3_filesystem(settings))
    return {
        "feature_version": version,
        "model_version": model_version,
        "rows": out.num_rows,
        "predicted_likes": int((scores >= names.DECISION_THRESHOLD).sum()),
        "actual_likes": int(np.asarray(table.column("label")).sum()),
        "output": f"s3://{names.BUCKET_FEATURES}/{key}",
    }
