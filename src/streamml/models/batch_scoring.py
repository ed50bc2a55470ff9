"""Offline batch inference: the registry's @champion scores every rating of a feature version's stream period, and
the scores are written as parquet beside the version in MinIO (the ``batch_scoring`` DAG)."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamml import names
from streamml.config import Settings
from streamml.errors import StreamMLError
from streamml.features import spec
from streamml.features.batch import read_part
from streamml.models.integrity import load_verified
from streamml.models.registry import champion_version
from streamml.stores.features import RedisFeatureStore
from streamml.stores.objects import s3_filesystem
from streamml.stores.redis_client import redis_client


def score_stream_period(settings: Settings, feature_version: int | None = None) -> dict[str, Any]:
    """Score the whole stream period with @champion (offline batch inference) into
    ``s3://features/v<n>/scores/<model>-v<version>.parquet``; return counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    version = RedisFeatureStore(redis_client(settings.redis)).active_version(feature_version)
    model_version = champion_version(settings)
    if model_version is None:
        raise StreamMLError("batch scoring needs a @champion; run the movielens_training DAG first")
    columns = ["userId", "movieId", "timestamp", "label", *spec.FEATURE_NAMES]
    table = read_part(settings, version, "stream", columns=columns)
    matrix = np.column_stack([table.column(name).to_numpy() for name in spec.FEATURE_NAMES]).astype(np.float64)
    key = settings.mlflow.signing_key.get_secret_value()
    scores = load_verified(settings.mlflow.tracking_uri, names.MODEL_NAME, model_version, key).scorer(matrix)
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
    pq.write_table(out, f"{names.BUCKET_FEATURES}/{key}", filesystem=s3_filesystem(settings.minio))
    return {
        "feature_version": version,
        "model_version": model_version,
        "rows": out.num_rows,
        "predicted_likes": int((scores >= names.DECISION_THRESHOLD).sum()),
        "actual_likes": int(np.asarray(table.column("label")).sum()),
        "output": f"s3://{names.BUCKET_FEATURES}/{key}",
    }
