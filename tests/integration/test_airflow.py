from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from streamml.airflow_client import AirflowClient
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
