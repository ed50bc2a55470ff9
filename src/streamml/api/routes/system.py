"""Liveness, readiness (every dependency checked) and the Prometheus scrape."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamml.api.deps import Deps
from streamml.runtime import health

router = APIRouter(tags=["system"])


@router.get("/health", summary="The API process is alive")
def alive() -> dict[str, str]:
    return {"status": "ok"}


# The servers the API calls (Spark is not one: the DAGs it triggers use it).
DEPENDENCIES = ("kafka", "redis", "minio", "mlflow", "airflow")


@router.get(
    "/ready",
    summary="Every dependency answers",
    responses={503: {"description": "a dependency is down; `down` names it and why"}},
)
async def ready(deps: Deps) -> JSONResponse:
    def check_all() -> list[health.Health]:
        with ThreadPoolExecutor(len(DEPENDENCIES)) as pool:
            return list(pool.map(lambda s: health.check(s, deps.settings, timeout=3.0), DEPENDENCIES))

    results = await run_in_threadpool(check_all)
    down = {h.service: h.detail for h in results if not h.ok}
    if down:
        body: dict[str, Any] = {"detail": f"not ready: {', '.join(down)} down", "down": down}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready", "checks": {h.service: h.detail for h in results}})


@router.get("/metrics", summary="Prometheus metrics of this API process", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
