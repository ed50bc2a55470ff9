"""The Pipelines page's frames: a run's progress, recent runs and the conf a person types."""

from __future__ import annotations

import pandas as pd
import pytest

from streamml.dashboard import frames_pipelines

RUN = {
    "run_id": "manual__1",
    "state": "running",
    "start_date": "2026-01-01T10:00:00Z",
    "end_date": None,
    "tasks": [
        {"task_id": "ingest", "state": "success", "try_number": 1, "start_date": "2026-01-01T10:00:00Z",
         "end_date": "2026-01-01T10:00:04.5Z"},
        {"task_id": "validate", "state": "skipped", "try_number": 0, "start_date": None, "end_date": None},
        {"task_id": "train", "state": "running", "try_number": 1, "start_date": "2026-01-01T10:00:05Z",
         "end_date": None},
        {"task_id": "promote", "state": None, "try_number": 0, "start_date": None, "end_date": None},
    ],
}  # fmt: skip


def test_run_progress_counts_finished_tasks() -> None:
    progress = frames_pipelines.run_progress(RUN)
    assert (progress.done, progress.total, progress.finished) == (2, 4, False)
    assert progress.fraction == 0.5
    assert progress.tasks["state"].tolist() == ["success", "skipped", "running", "scheduled"]
    assert progress.tasks["duration_s"].iloc[0] == pytest.approx(4.5) and pd.isna(progress.tasks["duration_s"].iloc[2])
    finished = frames_pipelines.run_progress({"run_id": "x", "state": "success", "tasks": []})
    assert finished.finished and finished.fraction == 1.0


def test_dag_runs_table() -> None:
    table = frames_pipelines.dag_runs_table([RUN, {**RUN, "run_id": "manual__0", "state": "failed"}])
    assert table[["run_id", "state", "tasks"]].values.tolist() == [
        ["manual__1", "running", "2/4 done"],
        ["manual__0", "failed", "2/4 done"],
    ]


def test_parse_conf() -> None:
    assert frames_pipelines.parse_conf("  ") == {}
    assert frames_pipelines.parse_conf('{"quantile": 0.8}') == {"quantile": 0.8}
    with pytest.raises(ValueError, match="not valid JSON"):
        frames_pipelines.parse_conf("{quantile: 0.8}")
    with pytest.raises(ValueError, match="JSON object"):
        frames_pipelines.parse_conf("[1, 2]")
