"""Every DAG file parses without import errors, has tags and retries, and does no I/O at parse time."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "airflow" / "dags"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("airflow-home")
    mp.setenv("AIRFLOW_HOME", str(home))
    mp.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    yield DagBag(dag_folder=str(DAGS))
    mp.undo()


def test_no_import_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert "movielens_training" in dagbag.dags


def test_every_dag_has_tags_retries_and_a_description(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.default_args.get("retries", 0) >= 1, dag_id
        assert dag.description or dag.doc_md, dag_id


def test_training_dag_runs_the_batch_steps_in_order(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["movielens_training"]
    order = ["ingest", "validate", "split_and_features", "materialize", "train_and_evaluate", "promote"]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids


def test_batch_scoring_follows_the_champion_asset_the_training_dag_updates(dagbag) -> None:  # type: ignore[no-untyped-def]
    from streamml import names

    promote = dagbag.dags[names.DAG_TRAINING].get_task("promote")
    assert [outlet.name for outlet in promote.outlets] == [names.ASSET_CHAMPION]
    scoring = dagbag.dags[names.DAG_BATCH_SCORING]
    assert [asset.name for asset in scoring.timetable.asset_condition.objects] == [names.ASSET_CHAMPION]


def test_retrain_dag_extends_the_snapshot_trains_and_gates_daily(dagbag) -> None:  # type: ignore[no-untyped-def]
    from streamml import names

    dag = dagbag.dags[names.DAG_RETRAIN]
    order = ["extend_snapshot", "features", "train", "gate"]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}
    assert dag.timetable.expression == "0 0 * * *" and not dag.catchup
    assert not dag.timetable.run_immediately  # no run at deploy: the first is at midnight
    assert set(dag.params) == {"reason", "model", "min_shadow_pairs", "shadow_wait_seconds", "promotion_margin"}
    assert [outlet.name for outlet in dag.get_task("gate").outlets] == [names.ASSET_CHAMPION]
