"""The movielens_retrain DAG (configuration only; every step is a call into streamml.tasks)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, task

from streamml import names


@dag(
    dag_id=names.DAG_RETRAIN,
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20)},
    params={
        "reason": Param("scheduled", type="string", maxLength=500, description="why this run (the monitor says)"),
        "model": Param(
            {}, type="object", description='model config, e.g. {"model_type": "logreg", "logreg": {"C": 0.5}}'
        ),
        "min_shadow_pairs": Param(
            None, type=["null", "integer"], minimum=1, description="shadowed requests the online gate needs"
        ),
        "shadow_wait_seconds": Param(
            None, type=["null", "number"], minimum=0, maximum=86400, description="how long the gate waits for them"
        ),
        "promotion_margin": Param(
            None, type=["null", "number"], minimum=0, maximum=1, description="AUC margin over the champion"
        ),
    },
    tags=["streamml", "movielens", "retraining"],
    max_active_runs=1,
)
def movielens_retrain() -> None:
    """MovieLens retraining: the history plus every rating the feedback archive holds (`features/online/`) as a new
    snapshot, point-in-time features over it with Spark (evaluated on the newest feedback), train, register as
    @challenger; the scorers shadow-score it, and the gate promotes it on its online AUC against the champion's on
    the same requests (offline streaming AUC when there is not enough shadow evidence in time).

    Runs daily, when the drift monitor alarms (conf `reason` says why), or when triggered from the UI or with
    `streamml pipelines trigger movielens_retrain --wait`. Skipped while the archive holds too little feedback.
    """

    @task
    def extend_snapshot() -> dict[str, Any]:
        from streamml import tasks
        from streamml.config import get_settings

        with tasks.fail_without_retry():
            return tasks.retrain_snapshot(get_settings())

    @task
    def features(snapshot: dict[str, Any]) -> int:
        from streamml import tasks
        from streamml.config import get_settings

        with tasks.fail_without_retry():
            return int(tasks.build_features(get_settings(), snapshot["snapshot"], snapshot["quantile"])["version"])

    @task
    def train(version: int, params: dict[str, Any] | None = None) -> dict[str, Any]:
        from streamml import tasks
        from streamml.config import get_settings

        with tasks.fail_without_retry():
            return tasks.train(get_settings(), version, (params or {}).get("model") or {})

    @task(outlets=[Asset(names.ASSET_CHAMPION)])
    def gate(trained: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        from streamml import tasks
        from streamml.config import get_settings

        p = params or {}
        with tasks.fail_without_retry():
            return tasks.promote_on_evidence(
                get_settings(),
                int(trained["version"]),
                p.get("promotion_margin"),
                p.get("min_shadow_pairs"),
                p.get("shadow_wait_seconds"),
            )

    gate(train(features(extend_snapshot())))


movielens_retrain()
