"""The model registry: versions side by side, one version's report, promote and roll back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool

from streamml.api.deps import Actor, ApiKey, Deps
from streamml.api.schemas import Problem
from streamml.models import catalog, registry

router = APIRouter(tags=["models"])

Version = Annotated[int, Path(ge=1, le=10**9, description="Registered version of movielens-like.")]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    404: {"model": Problem},
    409: {"model": Problem},
    503: {"model": Problem},
}


@router.get("/models", summary="Registered versions, aliases and key metrics", responses=ERRORS)
def list_models(deps: Deps) -> dict[str, Any]:
    return catalog.list_versions(deps.settings)


@router.get("/report/{version}", summary="A version's report", responses=ERRORS)
def report(version: Version, deps: Deps) -> dict[str, Any]:
    return catalog.report(deps.settings, version)


@router.post("/models/{version}/promote", summary="Make VERSION @champion now", dependencies=[ApiKey], responses=ERRORS)
async def promote(version: Version, deps: Deps, who: Actor) -> dict[str, Any]:
    reason = f"promoted through the API by {who}"
    result = await run_in_threadpool(registry.promote, deps.settings, version, reason=reason)
    await run_in_threadpool(_refresh, deps)
    return result


@router.post("/models/rollback", summary="Put the previous @champion back", dependencies=[ApiKey], responses=ERRORS)
async def rollback(deps: Deps, who: Actor) -> dict[str, Any]:
    result = await run_in_threadpool(registry.rollback, deps.settings, reason=f"rolled back through the API by {who}")
    await run_in_threadpool(_refresh, deps)
    return result


def _refresh(deps: Deps) -> None:
    with deps.model_lock:
        deps.champion.refresh()
