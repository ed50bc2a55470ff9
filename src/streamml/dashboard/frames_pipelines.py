"""The Pipelines page's frames: a DAG run's progress and task timeline, recent runs, and the run conf a person
types."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from streamml.airflow_client import FINISHED_RUN_STATES
from streamml.dashboard.values import parse_time

TASK_DONE_STATES = frozenset({"success", "skipped", "upstream_failed", "failed", "removed"})
"""Task states a run's progress counts as done: the terminal ones (a task to be retried is ``up_for_retry``)."""


@dataclass(frozen=True)
class RunProgress:
    """A DAG run's state and its tasks, with how many are done."""

    run_id: str
    state: str
    done: int
    total: int
    tasks: pd.DataFrame  # task_id, state, try_number, start_date, end_date, duration_s

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_RUN_STATES

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else (1.0 if self.finished else 0.0)


def run_progress(run: Mapping[str, Any]) -> RunProgress:
    """A DAG run's task states and how many tasks are done."""
    rows = []
    for t in run.get("tasks") or []:
        start, end = parse_time(t.get("start_date")), parse_time(t.get("end_date"))
        rows.append(
            {
                "task_id": t["task_id"],
                "state": t.get("state") or "scheduled",
                "try_number": t.get("try_number"),
                "start_date": start,
                "end_date": end,
                "duration_s": (end - start).total_seconds() if start is not None and end is not None else None,
            }
        )
    tasks = pd.DataFrame(rows, columns=["task_id", "state", "try_number", "start_date", "end_date", "duration_s"])
    done = int(tasks["state"].isin(TASK_DONE_STATES).sum()) if not tasks.empty else 0
    return RunProgress(str(run["run_id"]), str(run.get("state") or "queued"), done, len(tasks), tasks)


def dag_runs_table(runs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``run_id, state, start_date, end_date, tasks`` (``3/5 done``), newest first as the API returns them."""
    rows = []
    for run in runs:
        progress = run_progress(run)
        rows.append(
            {
                "run_id": progress.run_id,
                "state": progress.state,
                "start_date": parse_time(run.get("start_date")),
                "end_date": parse_time(run.get("end_date")),
                "tasks": f"{progress.done}/{progress.total} done",
            }
        )
    return pd.DataFrame(rows, columns=["run_id", "state", "start_date", "end_date", "tasks"])


def parse_conf(text: str) -> dict[str, Any]:
    """A DAG run conf typed by a person: empty means ``{}``; anything else must be a JSON object."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"conf is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ValueError('conf must be a JSON object, like {"quantile": 0.8}')
    return value
