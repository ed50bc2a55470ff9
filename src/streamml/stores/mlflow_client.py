"""The MLflow adapter: the one way to get a tracking/registry client, to read an alias, and to turn MLflow's errors
into the platform's (missing -> NotFoundError, refused -> UpstreamError, no answer -> TransientError)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from streamml.config import MlflowSettings
from streamml.errors import NotFoundError, TransientError, UpstreamError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # what MLflow answers for an unknown alias


def mlflow_client(tracking_uri: str) -> MlflowClient:
    """A client of the tracking server, which is also the model registry."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def client(mlflow: MlflowSettings) -> MlflowClient:
    return mlflow_client(mlflow.tracking_uri)


@contextmanager
def mlflow_errors(what: str) -> Iterator[None]:
    """Run MLflow calls that ``what`` describes ("read the champion of X"), raising the platform's errors."""
    from mlflow.exceptions import MlflowException, RestException

    try:
        yield
    except RestException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFoundError(f"MLflow cannot {what}: it does not exist") from exc
        raise UpstreamError(f"MLflow refused to {what}: {exc}") from exc
    except MlflowException as exc:  # no answer from the server: a retry may fix it
        raise TransientError(f"MLflow could not {what}: {exc}") from exc


def alias_version(mlflow: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version ``model_name@alias`` points to, or None when the model or the alias does not exist."""
    from mlflow.exceptions import RestException

    try:
        return mlflow.get_model_version_by_alias(model_name, alias)
    except RestException as exc:
        if exc.error_code in _MISSING:
            return None
        raise
