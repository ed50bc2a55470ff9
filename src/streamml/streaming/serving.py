"""The scorer's model: the registry's @champion, reloaded on a model event or when the alias moves.

A new model is loaded beside the old one and swapped between batches; a failed load keeps the old model. With
``background=True`` (the scorer) the alias lookup and the load run on a thread of their own, so a slow or absent
MLflow never stalls scoring: the batch that notices an event or the end of the poll interval only wakes that thread
and is scored with the model already serving.
"""

from __future__ import annotations

import logging
import threading
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
        *,
        background: bool = False,
        on_loaded: Callable[[ServingModel], None] | None = None,
        on_failed: Callable[[str], None] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.poll_seconds = poll_seconds
        self.events = events
        self.background = background
        self.on_loaded = on_loaded
        self.on_failed = on_failed
        self._loader = loader
        self._model: ServingModel | None = None
        self._checked = 0.0
        self._lock = threading.Lock()  # one refresh at a time (the reload thread, the API's explicit refresh)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def _champion_version(self) -> str:
        from mlflow.exceptions import MlflowException

        from streamml.stores.mlflow_client import alias_version, mlflow_client

        try:
            mv = alias_version(mlflow_client(self.tracking_uri), self.model_name, names.ALIAS_CHAMPION)
        except MlflowException as exc:
            raise ModelUnavailableError(f"no @{names.ALIAS_CHAMPION} of {self.model_name}: {exc}") from exc
        if mv is None:
            raise ModelUnavailableError(f"no @{names.ALIAS_CHAMPION} of {self.model_name} yet")
        return str(mv.version)

    def _load(self, version: str) -> ServingModel:
        uri = f"models:/{self.model_name}/{version}"
        if self._loader is not None:
            return ServingModel(self.model_name, version, self._loader(uri))
        from streamml.models.pyfunc import load_scorer

        return ServingModel(self.model_name, version, load_scorer(uri, tracking_uri=self.tracking_uri))

    def _event_arrived(self) -> bool:
        if self.events is None:
            return False
        msg = self.events.poll(0)
        return msg is not None and msg.error() is None

    def refresh(self) -> bool:
        """Load the champion if it changed; return True when a new model is now serving.

        Raises :class:`ModelUnavailableError` only while nothing is serving; later failures keep the old model and
        are logged, kept in ``last_error`` and reported to ``on_failed``.
        """
        with self._lock:
            self._checked = time.monotonic()
            try:
                version = self._champion_version()
                if self._model is not None and self._model.version == version:
                    return False
                model = self._load(version)
            except Exception as exc:  # any failed load (registry, artifact store, unpickling) keeps the old model
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.on_failed is not None:
                    self.on_failed(self.last_error)
                if self._model is None:
                    raise
                logger.error("model reload failed, still serving version=%s: %s", self._model.version, exc)
                return False
            previous = self._model.version if self._model else None
            self._model, self.last_error = model, None
        logger.info("serving model=%s version=%s (was %s)", self.model_name, model.version, previous)
        if self.on_loaded is not None:
            self.on_loaded(model)
        return True

    def _reload_forever(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.refresh()
            except Exception:  # the thread must outlive any failure; refresh has reported it
                logger.exception("model reload failed")

    def _reload_in_background(self) -> None:
        self._checked = time.monotonic()  # the next batches do not wake it again while it works
        if self._thread is None:
            self._thread = threading.Thread(target=self._reload_forever, name="champion-reload", daemon=True)
            self._thread.start()
        self._wake.set()

    def __call__(self) -> ServingModel:
        if self._model is None:
            self.refresh()
        elif self._event_arrived() or time.monotonic() - self._checked > self.poll_seconds:
            if self.background:
                self._reload_in_background()
            else:
                self.refresh()
        assert self._model is not None  # noqa: S101 - refresh raised otherwise
        return self._model
