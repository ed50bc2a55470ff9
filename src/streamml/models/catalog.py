"""Read-only views of MLflow for people: registered versions, training runs, one version's report."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamml import names
from streamml.config import Settings
from streamml.errors import NotFoundError, StreamMLError
from streamml.models import evaluate as ev
from streamml.stores.mlflow_client import client, mlflow_errors


def _iso(millis: int | None) -> str | None:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat() if millis else None


def list_versions(settings: Settings, model_name: str = names.MODEL_NAME) -> dict[str, Any]:
    """Every registered version with its aliases, model type and key metrics, newest first."""
    from mlflow.exceptions import RestException

    with mlflow_errors(f"list the versions of {model_name}"):
        mlflow_client = client(settings.mlflow)
        try:
            model = mlflow_client.get_registered_model(model_name)
        except RestException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return {"name": model_name, "aliases": {}, "versions": []}
        versions = mlflow_client.search_model_versions(f"name='{model_name}'", max_results=200)
        aliases = {alias: str(v) for alias, v in (model.aliases or {}).items()}
        rows = []
        for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
            run = mlflow_client.get_run(mv.run_id) if mv.run_id else None
            metrics = dict(run.data.metrics) if run else {}
            rows.append(
                {
                    "version": str(mv.version),
                    "aliases": sorted(a for a, v in aliases.items() if v == str(mv.version)),
                    "run_id": mv.run_id,
                    "created": _iso(mv.creation_timestamp),
                    "model_type": (run.data.tags.get("model_type") if run else None) or "unknown",
                    "feature_version": run.data.params.get("feature_version") if run else None,
                    "metrics": {key: metrics[key] for key in names.SUMMARY_METRICS if key in metrics},
                }
            )
    return {"name": model_name, "aliases": aliases, "versions": rows}


def list_runs(settings: Settings, limit: int = 50) -> list[dict[str, Any]]:
    """The newest training runs of the experiment with their params and metrics."""
    with mlflow_errors("search the training runs"):
        mlflow_client = client(settings.mlflow)
        experiment = mlflow_client.get_experiment_by_name(settings.mlflow.experiment)
        if experiment is None:
            return []
        runs = mlflow_client.search_runs(
            [experiment.experiment_id], max_results=limit, order_by=["attributes.start_time DESC"]
        )
    return [
        {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "start_time": _iso(run.info.start_time),
            "end_time": _iso(run.info.end_time),
            "params": dict(run.data.params),
            "metrics": dict(run.data.metrics),
        }
        for run in runs
    ]


def _artifact_json(mlflow_client: Any, run_id: str, path: str) -> Any:
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="streamml-report-") as tmp:
        try:
            local = mlflow_client.download_artifacts(run_id, path, tmp)
        except (MlflowException, OSError):
            return None  # older runs may lack an artifact; the report shows what exists
        return json.loads(Path(local).read_text())


def report(settings: Settings, version: int, model_name: str = names.MODEL_NAME) -> dict[str, Any]:
    """One version's report: metadata, metrics per evaluation mode, hyperparameters, feature importance,
    classification report and confusion matrix (streaming mode, the one the gate uses)."""
    from mlflow.exceptions import RestException

    with mlflow_errors(f"read {model_name} version {version}"):
        mlflow_client = client(settings.mlflow)
        try:
            mv = mlflow_client.get_model_version(model_name, str(version))
        except RestException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise NotFoundError(f"{model_name} has no version {version}") from exc
            raise
        if not mv.run_id:
            raise StreamMLError(f"{model_name} version {version} has no training run")
        run_id = str(mv.run_id)
        run = mlflow_client.get_run(run_id)
        importance = _artifact_json(mlflow_client, run_id, "permutation_importance.json") or {}
        confusion = _artifact_json(mlflow_client, run_id, "confusion_matrix.json") or {}
        classification = _artifact_json(mlflow_client, run_id, "classification_report.json") or {}
    metrics = dict(run.data.metrics)
    by_mode = {
        mode: {key.removeprefix(f"{mode}_"): value for key, value in metrics.items() if key.startswith(f"{mode}_")}
        for mode in ev.MODES
    }
    return {
        "name": model_name,
        "version": str(mv.version),
        "model_type": run.data.tags.get("model_type", "unknown"),
        "created": _iso(mv.creation_timestamp),
        "aliases": sorted(mv.aliases or []),
        "run_id": mv.run_id,
        "metrics": by_mode,
        "params": dict(run.data.params),
        "feature_importance": [
            {"feature": item["feature"], "importance": item["mean"], "std": item.get("std")}
            for item in importance.get("features", [])
        ],
        "classification_report": classification,
        "confusion_matrix": confusion.get("matrices", {}),
        "class_names": list(confusion.get("labels", names.CLASS_NAMES)),
    }
