"""Airflow REST API v2 client: trigger a DAG, follow its task states until the run ends, and say why a run failed
(each failed task's exception, read from its log, with the link to that log in the Airflow UI)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from streamml.config import AirflowSettings
from streamml.errors import NotFoundError, StreamMLError, TransientError, UpstreamError

logger = logging.getLogger(__name__)

FINISHED_RUN_STATES = {"success", "failed"}


@dataclass(frozen=True)
class TaskFailure:
    """Why a task of a run failed: the exception of its last try, as its log recorded it."""

    task_id: str
    try_number: int
    error: str
    log_url: str

    def as_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "try_number": self.try_number, "error": self.error, "log_url": self.log_url}


def error_from_log(events: list[dict[str, Any]]) -> str:
    """The exception a task log recorded (``ExcType: message`` of the raised error; for Airflow's fail-without-retry
    exception, its message, which names the cause), else its last error-level line, else a pointer to the log.
    ``events`` are REST v2 structured log lines."""
    for event in reversed(events):
        for exc in event.get("error_detail") or []:
            if isinstance(exc, dict) and exc.get("exc_type"):
                kind, message = str(exc["exc_type"]), str(exc.get("exc_value", ""))
                return message if kind.endswith("AirflowFailException") else f"{kind}: {message}"
    for event in reversed(events):
        if str(event.get("level", "")).lower() in ("error", "critical") and event.get("event"):
            return str(event["event"])
    return "no exception in the task log; open the log in the Airflow UI"


@dataclass(frozen=True)
class RunStatus:
    dag_id: str
    run_id: str
    state: str
    tasks: dict[str, str]  # task_id -> state (None becomes "scheduled")
    durations: dict[str, float]
    conf: dict[str, Any] = field(default_factory=dict)  # what the run was triggered with (the monitor's reason)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_RUN_STATES


class AirflowClient:
    """The few REST v2 calls the platform needs, with a JWT from ``POST /auth/token``."""

    def __init__(self, airflow: AirflowSettings, timeout: float = 15.0) -> None:
        self.airflow = airflow
        self._http = httpx.Client(base_url=airflow.base_url, timeout=timeout)
        self._token: str | None = None
        self._errors: dict[tuple[str, str, str, int], str] = {}  # a failed try's log no longer changes

    def close(self) -> None:
        self._http.close()

    def login(self) -> str:
        """A fresh JWT from ``POST /auth/token`` with the admin credentials of the settings."""
        resp = self._request_raw(
            "POST",
            "/auth/token",
            json={"username": self.airflow.admin_user, "password": self.airflow.admin_password.get_secret_value()},
        )
        if resp.status_code >= 400:
            raise StreamMLError(f"Airflow refused the admin login ({resp.status_code}); check .env")
        self._token = str(resp.json()["access_token"])
        return self._token

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token or self.login()}"}

    def _request_raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TransientError(f"Airflow at {self.airflow.base_url} is unreachable: {exc}") from exc

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        path = quote(path, safe="/~:+@")  # ids reach the URL verbatim; anything else is percent-encoded
        resp = self._request_raw(method, path, headers=self._auth(), **kwargs)
        if resp.status_code == 401:  # token expired: log in again once
            self._token = None
            resp = self._request_raw(method, path, headers=self._auth(), **kwargs)
        if resp.status_code == 404:
            raise NotFoundError(f"Airflow has no {path.removeprefix('/api/v2/')}")
        if resp.status_code >= 500:
            raise TransientError(f"Airflow {method} {path} answered {resp.status_code}: {resp.text[:300]}")
        if resp.status_code >= 400:
            raise UpstreamError(f"Airflow {method} {path} answered {resp.status_code}: {resp.text[:300]}")
        return resp.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id`` (new DAG files take a few seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            resp = self._request_raw("GET", f"/api/v2/dags/{dag_id}", headers=self._auth())
            if resp.status_code == 200:
                return dict(resp.json())
            if resp.status_code == 404 and time.monotonic() > deadline:
                raise NotFoundError(f"DAG {dag_id} is not available in Airflow (not parsed, or no such DAG)")
            if resp.status_code != 404:
                raise UpstreamError(f"DAG {dag_id} is not available in Airflow ({resp.status_code}): {resp.text[:200]}")
            time.sleep(2)

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, dag_wait: float = 120.0, note: str | None = None
    ) -> str:
        """Start a run of ``dag_id``; ``note`` (who and why) shows on the run in Airflow's UI."""
        self.wait_for_dag(dag_id, timeout=dag_wait)
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if note is not None:
            body["note"] = note
        return str(self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def status(self, dag_id: str, run_id: str) -> RunStatus:
        run = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        tis = self.task_instances(dag_id, run_id)
        return RunStatus(
            dag_id=dag_id,
            run_id=run_id,
            state=str(run["state"]),
            tasks={t["task_id"]: t["state"] or "scheduled" for t in tis},
            durations={t["task_id"]: float(t.get("duration") or 0.0) for t in tis},
            conf=dict(run.get("conf") or {}),
        )

    def set_state(self, dag_id: str, run_id: str, state: str) -> None:
        """Mark a run ``success`` or ``failed`` (its running tasks are stopped)."""
        self._request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"state": state})

    def dags(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/api/v2/dags", params={"limit": 100})["dags"])

    def runs(self, dag_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """The newest runs of a DAG, newest first."""
        params = {"limit": limit, "order_by": "-run_after"}
        return list(self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns", params=params)["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return list(self._request("GET", path)["task_instances"])

    def log_url(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """The task's log page in the Airflow UI."""
        path = quote(f"/dags/{dag_id}/runs/{run_id}/tasks/{task_id}", safe="/~:+@")
        return f"{self.airflow.base_url}{path}?try_number={try_number}"

    def task_error(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """The exception of one finished try of a task, from its log (see :func:`error_from_log`); read once per
        client, since the log of a failed try does not change (the API's client serves the dashboard's polls)."""
        key = (dag_id, run_id, task_id, try_number)
        if key not in self._errors:
            path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
            try:
                log = self._request("GET", path, params={"full_content": "true"})
            except NotFoundError:
                return "the task left no log"
            content = log.get("content") if isinstance(log, dict) else None
            if len(self._errors) >= 256:
                self._errors.clear()
            self._errors[key] = error_from_log([e for e in content or [] if isinstance(e, dict)])
        return self._errors[key]

    def failures(
        self, dag_id: str, run_id: str, task_instances: list[dict[str, Any]] | None = None
    ) -> list[TaskFailure]:
        """Each task of the run that failed itself, with its exception and log link; tasks that only did not run
        because an upstream task failed are left out (their cause is listed). ``task_instances``: the run's, when
        the caller has read them already."""
        failed = [
            (str(ti["task_id"]), int(ti.get("try_number") or 1))
            for ti in (task_instances if task_instances is not None else self.task_instances(dag_id, run_id))
            if ti.get("state") == "failed"
        ]
        return [
            TaskFailure(task, n, self.task_error(dag_id, run_id, task, n), self.log_url(dag_id, run_id, task, n))
            for task, n in failed
        ]

    def find_run(self, run_id: str) -> str:
        """The DAG a run id belongs to."""
        for dag in self.dags():
            try:
                self._request("GET", f"/api/v2/dags/{dag['dag_id']}/dagRuns/{run_id}")
            except NotFoundError:
                continue
            return str(dag["dag_id"])
        raise NotFoundError(f"no DAG run {run_id}")

    def follow(self, dag_id: str, run_id: str, poll: float = 2.0, timeout: float = 3600.0) -> Iterator[RunStatus]:
        """Yield the run's status whenever it changes, until the run ends."""
        deadline = time.monotonic() + timeout
        last: RunStatus | None = None
        while True:
            current = self.status(dag_id, run_id)
            if last is None or current.state != last.state or current.tasks != last.tasks:
                yield current
                last = current
            if current.finished:
                return
            if time.monotonic() > deadline:
                raise StreamMLError(f"run {run_id} of {dag_id} did not finish within {timeout:.0f}s")
            time.sleep(poll)


def trigger_and_wait(
    airflow: AirflowSettings,
    dag_id: str,
    conf: dict[str, Any] | None = None,
    on_change: Callable[[RunStatus], None] | None = None,
    timeout: float = 3600.0,
) -> RunStatus:
    """Trigger ``dag_id`` and follow it to the end; the final status says whether it succeeded."""
    client = AirflowClient(airflow)
    try:
        run_id = client.trigger(dag_id, conf)
        final: RunStatus | None = None
        for final in client.follow(dag_id, run_id, timeout=timeout):
            if on_change:
                on_change(final)
        assert final is not None  # noqa: S101 - follow yields at least once
        return final
    finally:
        client.close()
