"""Training runs in MLflow and datasets in MinIO."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from streamml.api.deps import Deps
from streamml.api.schemas import Problem
from streamml.data.ingest import list_snapshots
from streamml.features.batch import list_versions
from streamml.models import catalog

router = APIRouter(tags=["catalog"])


@router.get("/runs", summary="MLflow training runs with params and metrics", responses={503: {"model": Problem}})
def runs(deps: Deps, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    return {"runs": catalog.list_runs(deps.settings, limit)}


@router.get("/datasets", summary="Snapshots and feature versions in MinIO, with row counts",
            responses={503: {"model": Problem}})  # fmt: skip
def datasets(deps: Deps) -> dict[str, Any]:
    return {"snapshots": list_snapshots(deps.settings), "feature_versions": list_versions(deps.settings)}
