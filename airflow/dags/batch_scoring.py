"""The batch_scoring DAG (configuration only; the step is a call into streamml.tasks)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, dag, task

from streamml import names


@dag(
    dag_id=names.DAG_BATCH_SCORING,
    schedule=[Asset(names.ASSET_CHAMPION)],  # after every movielens_training run (its promote task); or by hand
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20)},
    tags=["streamml", "movielens", "inference"],
    max_active_runs=1,
)
def batch_scoring() -> None:
    """Offline batch inference: score every rating of the stream period with the registry's @champion and write
    the scores as parquet next to the active feature version in MinIO; returns the counts. Runs after each
    movielens_training run (the `movielens_like_champion` asset) and when triggered."""

    @task
    def score_stream_period() -> dict[str, Any]:
        from streamml import tasks
        from streamml.config import get_settings

        with tasks.fail_without_retry():
            return tasks.batch_score(get_settings())

    score_stream_period()


batch_scoring()
