"""The scorer's model: the registry's @champion, reloaded on a model event or when the alias moves.

A new model is loaded beside the old one and swapped between batches; a failed load keeps the old model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from streamml import names
from streamml.errors import ModelUnavailableError
from streamml.streaming.scorer import ServingModel

logger = logging.getLogger(__name__)


class ChampionModel:
    """Callable returning the current :class:`ServingModel`; cheap to call once per batch."""

    def __init__(
        self,
        tracking_uri: str,
        model_name: str = names.MODEL_NAME,
        poll_seconds: float = 30.0,
        events: Any | None = None,  # a Kafka consumer subscribed to model-events.v1, polled without blocking
        loader: Callable[[str], Callable[..., Any]] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.poll_seconds = poll_seconds
        self.events = events
        self._loader = loader
        self._model: ServingModel | None = None
        self._checked = 0.0
        self.last_error: str | None = None

    def _champion_version(self) -> str:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            mv = MlflowClient(tracking_uri=self.tracking_uri).get_model_version_by_alias(
                self.model_name, names.ALIAS_CHAMPION
            )
        except MlflowException as exc:
            raise ModelUnavailableError(f"no @{names.ALIAS_CHAMPION} of {self.model_name}: {exc}") from exc
        return str(mv.version)

    def _load(self, version: str) -> ServingModel:
        from streamml.models.pyfunc import load_scorer

        uri = f"models:/{self.model_name}/{version}"
        predict = self._loader(uri) if self._loader else load_scorer(uri, tracking_uri=self.tracking_uri)
        return ServingModel(self.model_name, version, predict)

    def _event_arrived(self) -> bool:
        if self.events is None:
            return False
        msg = self.events.poll(0)
        return msg is not None and msg.error() is None

    def refresh(self) -> bool:
        """Load the champion if it changed; return True when a new model is now serving."""
        self._checked = time.monotonic()
        try:
            version = self._champion_version()
            if self._model is not None and self._model.version == version:
                return False
            model = self._load(version)
        except ModelUnavailableError as exc:
            self.last_error = str(exc)
            if self._model is None:
                raise
            logger.error("model reload failed, still serving version=%s: %s", self._model.version, exc)
            return False
        previous = self._model.version if self._model else None
        self._model, self.last_error = model, None
        logger.info("serving model=%s version=%s (was %s)", self.model_name, model.version, previous)
        return True

    def __call__(self) -> ServingModel:
        if self._model is None or self._event_arrived() or time.monotonic() - self._checked > self.poll_seconds:
            self.refresh()
        assert self._model is not None  # noqa: S101 - refresh raised otherwise
        return self._model
