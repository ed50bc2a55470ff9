"""The movielens_training DAG (configuration only; every step is a call into streamml.tasks)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, task

from streamml import names


@dag(
    dag_id=names.DAG_TRAINING,
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20)},
    params={
        "quantile": Param(
            names.SPLIT_QUANTILE,
            type="number",
            minimum=names.SPLIT_QUANTILE_RANGE[0],
            maximum=names.SPLIT_QUANTILE_RANGE[1],
            description="time split quantile",
        ),
        "model": Param(
            {}, type="object", description='model config, e.g. {"model_type": "logreg", "logreg": {"C": 0.5}}'
        ),
        "promotion_margin": Param(
            None, type=["null", "number"], description="streaming-AUC margin over the champion to promote"
        ),
        "movielens_dir": Param(
            None, type=["null", "string"], description="MovieLens directory (default: STREAMML_MOVIELENS_DIR)"
        ),
    },
    tags=["streamml", "movielens", "training"],
    max_active_runs=1,
)
def movielens_training() -> None:
    """MovieLens training: ingest the ratings, split them by time, build point-in-time features with Spark into MinIO,
    load the online snapshot into Redis, train and evaluate a model (both modes) into MLflow, and promote it to
    @champion if it beats the current one.

    Trigger from the UI or with `streamml pipelines trigger movielens_training --wait`. Param `quantile` sets the time
    split (history = ratings before that quantile of timestamps). Every task is idempotent: a rerun on the same data
    overwrites the same snapshot and feature version. When `promote` ends, the `movielens_like_champion` asset is
    updated, which starts `batch_scoring`.
    """

    @task
    def ingest(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from pathlib import Path

        from streamml import tasks
        from streamml.config import get_settings

        directory = (params or {}).get("movielens_dir")
        with tasks.fail_without_retry():
            return tasks.ingest(get_settings(), Path(directory) if directory else None)

    @task
    def validate(snapshot: dict[str, Any]) -> str:
        from streamml import tasks
        from streamml.config import get_settings

        with tasks.fail_without_retry():
            return str(tasks.validate(get_settings(), snapshot["snapshot"])["snapshot"])

    @task
    def split_and_features(snapshot: str, params: dict[str, Any] | None = None) -> int:
        from streamml import tasks
        from streamml.config import get_settings

        quantile = float((params or {}).get("quantile", names.SPLIT_QUANTILE))
        with tasks.fail_without_retry():
            return int(tasks.build_features(get_settings(), snapshot, quantile)["version"])

    @task
    def materialize(version: int) -> dict[str, Any]:
        from streamml import tasks
        from streamml.config import get_settings

        with tasks.fail_without_retry():
            return tasks.materialize(get_settings(), version)

    @task
    def train_and_evaluate(version: int, params: dict[str, Any] | None = None) -> dict[str, Any]:
        from streamml import tasks
        from streamml.config import get_settings

        with tasks.fail_without_retry():
            return tasks.train(get_settings(), version, (params or {}).get("model") or {})

    @task(outlets=[Asset(names.ASSET_CHAMPION)])  # batch_scoring runs on it: the lineage shows in the Assets view
    def promote(trained: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        from streamml import tasks
        from streamml.config import get_settings

        with tasks.fail_without_retry():
            return tasks.promote(get_settings(), int(trained["version"]), (params or {}).get("promotion_margin"))

    version = split_and_features(validate(ingest()))
    trained = train_and_evaluate(version)
    materialize(version) >> trained
    promote(trained)


movielens_training()
