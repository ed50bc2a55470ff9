from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from streamml import names
from streamml.config import Settings
from streamml.stores.objects import s3_client

pytestmark = [pytest.mark.integration, pytest.mark.mlflow]


def test_run_with_metric_and_artifact_lands_in_minio(
    settings: Settings, require: Callable[[str], None], uid: str, tmp_path: Path
) -> None:
    require("mlflow")
    require("minio")
    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    experiment_id = client.create_experiment(f"test-{uid}")
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "alpha", "0.5")
    client.log_metric(run.info.run_id, "auc", 0.81)
    artifact = tmp_path / "note.txt"
    artifact.write_text(f"hello {uid}")
    client.log_artifact(run.info.run_id, str(artifact))
    client.set_terminated(run.info.run_id)

    fetched = client.get_run(run.info.run_id)
    assert fetched.data.params == {"alpha": "0.5"}
    assert fetched.data.metrics == {"auc": 0.81}
    back = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id,
            artifact_path="note.txt",
            dst_path=str(tmp_path / "dl"),
            tracking_uri=settings.mlflow.tracking_uri,
        )
    )
    assert back.read_text() == f"hello {uid}"
    # The server proxies artifacts into the mlflow bucket on MinIO.
    objects = s3_client(settings.minio).list_objects_v2(Bucket=names.BUCKET_MLFLOW).get("Contents", [])
    assert any(o["Key"].endswith(f"{run.info.run_id}/artifacts/note.txt") for o in objects)
