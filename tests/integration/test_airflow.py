from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest

from streamml import names
from streamml.airflow_client import AirflowClient
from streamml.api import create_app
from streamml.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def test_token_then_dag_list(settings: Settings, require: Callable[[str], None]) -> None:
    require("airflow")
    base = settings.airflow.base_url
    assert httpx.get(f"{base}/api/v2/dags", timeout=10).status_code == 401
    token = AirflowClient(settings.airflow).login()
    resp = httpx.get(f"{base}/api/v2/dags", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 200
    assert "dags" in resp.json() and "total_entries" in resp.json()


def test_wrong_password_is_refused(settings: Settings, require: Callable[[str], None]) -> None:
    require("airflow")
    resp = httpx.post(
        f"{settings.airflow.base_url}/auth/token",
        json={"username": settings.airflow.admin_user, "password": "definitely-wrong"},
        timeout=10,
    )
    assert resp.status_code in (401, 403)


def test_a_failed_run_names_the_task_its_error_and_its_log_in_the_cli_the_api_and_the_dashboard(
    settings: Settings, require: Callable[[str], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose data set is missing fails in its first task at once (no retry can fix it), and every place a
    person looks says so: the CLI's output, the API's run list and the dashboard's Pipelines page."""
    require("airflow")
    missing = tmp_path / "no-movielens-here"
    conf = json.dumps({"movielens_dir": str(missing)})
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "streamml", "pipelines", "trigger", names.DAG_TRAINING, "--wait", "--conf", conf],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    cause = f"{missing}/ratings.csv: file not found"
    assert f"task ingest failed (try 1): DataValidationError: {cause}" in " ".join(done.stderr.split())
    run_id = re.search(r"triggered \S+ run (\S+)", done.stdout).group(1)  # type: ignore[union-attr]
    log_url = f"{settings.airflow.base_url}/dags/{names.DAG_TRAINING}/runs/{quote(run_id, safe='/~:+@')}/tasks/ingest"
    assert f"its log: {log_url}?try_number=1" in done.stderr.replace("\n", "")
    assert httpx.get(log_url, timeout=10).status_code == 200  # the UI serves that page

    with TestClient(create_app(settings)) as api:
        runs = api.get(f"/pipelines/{names.DAG_TRAINING}/runs", params={"limit": 10}).json()["runs"]
    run = next(r for r in runs if r["run_id"] == run_id)
    assert run["state"] == "failed"
    assert run["failures"] == [
        {
            "task_id": "ingest",
            "try_number": 1,
            "error": f"DataValidationError: {cause}",
            "log_url": f"{log_url}?try_number=1",
        }
    ]

    class ApiAnswers:  # the dashboard's API client, answering what the real API answered
        base_url = settings.api.base_url

        def pipelines(self) -> list[dict[str, object]]:
            return [{"dag_id": names.DAG_TRAINING, "is_paused": False, "description": ""}]

        def dag_runs(self, dag_id: str, limit: int = 10) -> list[dict[str, object]]:
            return [run]

    monkeypatch.setattr("streamml.dashboard.pages.pipelines.api_client", lambda _settings: ApiAnswers())
    page = AppTest.from_function(render_pipelines_page).run(timeout=60)
    shown = [e.value for e in page.error]
    assert any("Task `ingest` failed" in e and cause in e and f"({log_url}?try_number=1)" in e for e in shown), shown


def render_pipelines_page() -> None:
    from streamml.config import get_settings
    from streamml.dashboard.pages import pipelines

    pipelines.render(get_settings())
