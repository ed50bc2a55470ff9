"""Airflow DAGs: list, runs with task states (and, for a failed run, each failed task's exception and log link),
trigger, and a run's progress as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from streamml import names
from streamml.api.deps import Actor, ApiKey, Deps, brief, summary
from streamml.api.schemas import (
    BAD_BODY,
    NoConf,
    Problem,
    RetrainConf,
    TrainingConf,
    TriggerRequest,
    TriggerResponse,
)
from streamml.errors import NotFoundError, StreamMLError

router = APIRouter(prefix="/pipelines", tags=["pipelines"])

DagId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,250}$", description="Airflow DAG id.")]
RunId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.~:+\-]{1,250}$", description="Airflow DAG run id.")]
ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": Problem}, 404: {"model": Problem}, 503: {"model": Problem}}


def _task(ti: dict[str, Any]) -> dict[str, Any]:
    keep = ("task_id", "state", "try_number", "start_date", "end_date", "duration")
    return {k: ti.get(k) for k in keep}


@router.get("", summary="The DAGs Airflow knows", responses=ERRORS)
def dags(deps: Deps) -> dict[str, Any]:
    keep = ("dag_id", "is_paused", "description")
    dags = [
        {k: d.get(k) for k in keep} | {"tags": [t["name"] for t in d.get("tags") or []]} for d in deps.airflow.dags()
    ]
    return {"dags": dags}


@router.get("/{dag_id}/runs", summary="The newest runs of a DAG with their task states", responses=ERRORS)
def runs(dag_id: DagId, deps: Deps, limit: Annotated[int, Query(ge=1, le=100)] = 10) -> dict[str, Any]:
    out = []
    for run in deps.airflow.runs(dag_id, limit):
        tasks = deps.airflow.task_instances(dag_id, run["dag_run_id"])
        keep = ("state", "start_date", "end_date", "run_after", "run_type", "conf")
        failures = (
            [f.as_dict() for f in deps.airflow.failures(dag_id, run["dag_run_id"], tasks)]
            if run.get("state") == "failed"
            else []
        )
        out.append(
            {
                "run_id": run["dag_run_id"],
                **{k: run.get(k) for k in keep},
                "tasks": [_task(t) for t in tasks],
                "failures": failures,
            }
        )
    return {"dag_id": dag_id, "runs": out}


TRIGGER_CONF: dict[str, type[BaseModel]] = {
    names.DAG_TRAINING: TrainingConf,
    names.DAG_RETRAIN: RetrainConf,
    names.DAG_BATCH_SCORING: NoConf,
}
"""The DAGs the API triggers, and the conf each accepts (a subset of its params: nothing that names a file)."""


@router.post(
    "/{dag_id}/trigger",
    summary="Trigger a DAG run",
    dependencies=[ApiKey],
    responses={**ERRORS, **BAD_BODY, 422: {"model": Problem}, 429: {"model": Problem}},
)
def trigger(dag_id: DagId, deps: Deps, who: Actor, body: TriggerRequest | None = None) -> TriggerResponse:
    schema = TRIGGER_CONF.get(dag_id)
    if schema is None:
        raise NotFoundError(f"the API triggers only {', '.join(sorted(TRIGGER_CONF))}; {dag_id} is not one of them")
    try:
        conf = schema.model_validate((body or TriggerRequest()).conf).model_dump(exclude_unset=True)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"conf of {dag_id}: {brief(exc)}") from None
    deps.limits.trigger(dag_id)
    run_id = deps.airflow.trigger(dag_id, conf, dag_wait=0, note=f"triggered through the API by {who}")
    return TriggerResponse(dag_id=dag_id, run_id=run_id, state=deps.airflow.status(dag_id, run_id).state)


@router.get(
    "/runs/{run_id}/events",
    summary="Follow a run: Server-Sent Events with the run and task states until it ends",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
)
async def events(
    run_id: RunId,
    request: Request,
    deps: Deps,
    dag_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.\-]{1,250}$", description="Faster lookup.")] = None,
    poll_seconds: Annotated[float, Query(ge=0.5, le=60)] = 2.0,
) -> StreamingResponse:
    dag: str = dag_id if dag_id is not None else await run_in_threadpool(deps.airflow.find_run, run_id)
    first = await run_in_threadpool(deps.airflow.status, dag, run_id)  # 404 before the stream starts
    deps.limits.check_streams()  # 429 when every stream slot is taken

    async def stream() -> AsyncIterator[str]:
        # The slot is taken once the stream runs (a client gone before that holds none) and freed when it ends.
        with deps.limits.stream_slot():
            async for event in _events(first):
                yield event

    async def _events(run: Any) -> AsyncIterator[str]:
        last = None
        while True:
            snapshot = {"dag_id": dag, "run_id": run_id, "state": run.state, "tasks": run.tasks}
            if snapshot != last:
                yield f"event: status\ndata: {json.dumps(snapshot)}\n\n"
                last = snapshot
            if run.finished:
                end: dict[str, Any] = {"state": run.state}
                if run.state == "failed":
                    failures = await run_in_threadpool(deps.airflow.failures, dag, run_id)
                    end["failures"] = [f.as_dict() for f in failures]
                yield f"event: end\ndata: {json.dumps(end)}\n\n"
                return
            await asyncio.sleep(poll_seconds)
            if await request.is_disconnected():
                return
            try:
                run = await run_in_threadpool(deps.airflow.status, dag, run_id)
            except StreamMLError as exc:  # Airflow went away mid-stream: tell the client and keep trying
                yield f"event: error\ndata: {json.dumps({'detail': summary(exc)})}\n\n"
                await asyncio.sleep(poll_seconds)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
