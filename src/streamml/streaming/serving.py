"""The served models: the registry's @champion (and, for shadow scoring, its @challenger), following the aliases.

A new model is loaded beside the old one and swapped between batches; a failed load keeps the old model and is
retried only after :data:`RETRY_FAILED_SECONDS` (or when the alias moves again).

With ``watch=True`` (the scorer and the API) a thread of its own follows the registry: it reads both aliases in one
call every ``poll_seconds`` (and at once on a model event, when ``events`` is given), so a promotion made by any path
(the gate, the API, the MLflow UI or client) is seen within a poll, idle or busy, and the load never stalls scoring.
One bound keeps a slow load from serving the old version for long: once a champion change has been seen for
``stale_seconds``, a batch waits for its load to finish (or fail) before it is scored. A batch that starts
``poll_seconds + stale_seconds`` (plus one registry round trip) after the change is therefore scored by the new
version. Without ``watch`` (unit tests) each call checks the registry when ``poll_seconds`` have passed.
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

POLL_SECONDS = 1.0
"""Between two reads of the aliases."""
STALE_SECONDS = 3.0
"""How long after a champion change has been seen batches keep the old model while the new one loads."""
LOAD_WAIT_SECONDS = 60.0
"""The longest a batch waits for that load; past it, the old model scores (and the load goes on)."""
RETRY_FAILED_SECONDS = 30.0
"""A version that failed to load is tried again after this long, unless the alias moves first."""


class ChampionModel:
    """Callable returning the current champion :class:`ServingModel`; cheap to call once per batch.
    :meth:`challenger` returns the @challenger to shadow-score, when ``shadow`` is on and it differs."""

    def __init__(
        self,
        tracking_uri: str,
        model_name: str = names.MODEL_NAME,
        poll_seconds: float = POLL_SECONDS,
        events: Any | None = None,  # a Kafka consumer subscribed to model-events.v1; only the watcher polls it
        loader: Callable[[str], Callable[..., Any]] | None = None,
        *,
        watch: bool = False,
        shadow: bool = False,
        stale_seconds: float = STALE_SECONDS,
        on_loaded: Callable[[ServingModel], None] | None = None,
        on_failed: Callable[[str], None] | None = None,
        signing_key: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.signing_key = signing_key
        self.model_name = model_name
        self.poll_seconds = poll_seconds
        self.events = events
        self.watch = watch
        self.shadow = shadow
        self.stale_seconds = stale_seconds
        self.on_loaded = on_loaded
        self.on_failed = on_failed
        self._loader = loader
        self._model: ServingModel | None = None
        self._challenger: ServingModel | None = None
        self._failed: dict[str, float] = {}  # version -> when its load failed
        self._checked = 0.0
        self._lock = threading.Lock()  # one refresh at a time (the watcher, the API's explicit refresh)
        self._loaded = threading.Event()  # cleared while a seen champion change loads
        self._loaded.set()
        self._change_seen = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def _aliases(self) -> dict[str, str]:
        """Alias -> version of the registered model, in one registry call; {} when the model does not exist."""
        from mlflow.exceptions import MlflowException, RestException

        from streamml.stores.mlflow_client import mlflow_client

        try:
            registered = mlflow_client(self.tracking_uri).get_registered_model(self.model_name)
        except RestException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise ModelUnavailableError(f"cannot read the aliases of {self.model_name}: {exc}") from exc
        except MlflowException as exc:
            raise ModelUnavailableError(f"cannot read the aliases of {self.model_name}: {exc}") from exc
        return {str(alias): str(version) for alias, version in (registered.aliases or {}).items()}

    def _load(self, version: str) -> ServingModel:
        uri = f"models:/{self.model_name}/{version}"
        if self._loader is not None:
            return ServingModel(self.model_name, version, self._loader(uri))
        from streamml.models.integrity import load_verified

        loaded = load_verified(self.tracking_uri, self.model_name, version, self.signing_key)
        return ServingModel(self.model_name, version, loaded.scorer)

    def _should_try(self, version: str) -> bool:
        failed = self._failed.get(version)
        return failed is None or time.monotonic() - failed > RETRY_FAILED_SECONDS

    def _report_failure(self, version: str, exc: Exception) -> None:
        self._failed[version] = time.monotonic()
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.on_failed is not None:
            self.on_failed(self.last_error)

    def refresh(self) -> bool:
        """Load the champion (and the challenger, when shadowing) if it changed; True when a new champion serves.

        Raises :class:`ModelUnavailableError` only while nothing is serving; later failures keep the old model and
        are logged, kept in ``last_error`` and reported to ``on_failed``.
        """
        with self._lock:
            self._checked = time.monotonic()
            try:
                aliases = self._aliases()
            except ModelUnavailableError as exc:
                self.last_error = str(exc)
                if self._model is None:
                    raise
                logger.warning("cannot read the registry, still serving version=%s: %s", self._model.version, exc)
                return False
            version = aliases.get(names.ALIAS_CHAMPION)
            if version is None:
                if self._model is None:
                    raise ModelUnavailableError(f"no @{names.ALIAS_CHAMPION} of {self.model_name} yet")
                return False  # the alias was deleted: keep serving what was promoted last
            changed = False
            if self._model is None or self._model.version != version and self._should_try(version):
                changed = self._swap_champion(version)
            if self.shadow and self._model is not None:
                self._follow_challenger(aliases.get(names.ALIAS_CHALLENGER), self._model.version)
        return changed

    def _swap_champion(self, version: str) -> bool:
        self._change_seen = time.monotonic()
        self._loaded.clear()
        try:
            model = self._load(version)
        except Exception as exc:  # any failed load (registry, artifact store, unpickling) keeps the old model
            self._report_failure(version, exc)
            if self._model is None:
                raise
            logger.error("loading version=%s failed, still serving version=%s: %s", version, self._model.version, exc)
            return False
        finally:
            self._loaded.set()
        previous = self._model.version if self._model else None
        self._model, self.last_error = model, None
        self._failed.pop(version, None)
        logger.info("serving model=%s version=%s (was %s)", self.model_name, model.version, previous)
        if self.on_loaded is not None:
            self.on_loaded(model)
        return True

    def _follow_challenger(self, version: str | None, champion: str) -> None:
        if version is None or version == champion:
            if self._challenger is not None:
                logger.info("stopped shadow scoring version=%s", self._challenger.version)
            self._challenger = None
            return
        if (self._challenger is not None and self._challenger.version == version) or not self._should_try(version):
            return
        try:
            self._challenger = self._load(version)
        except Exception as exc:  # a challenger that cannot load is not shadowed; the champion is unaffected
            self._challenger = None
            self._report_failure(version, exc)
            logger.error("cannot load challenger version=%s, not shadow scoring: %s", version, exc)
            return
        logger.info("shadow scoring challenger version=%s beside champion version=%s", version, champion)

    def challenger(self) -> ServingModel | None:
        """The @challenger to shadow-score on the champion's batches, or None (shadowing off, none, or the same)."""
        challenger, champion = self._challenger, self._model
        if challenger is None or champion is None or challenger.version == champion.version:
            return None
        return challenger

    def _event_arrived(self, timeout: float) -> bool:
        if self.events is None:
            self._stop.wait(timeout)
            return False
        msg = self.events.poll(timeout)
        return msg is not None and msg.error() is None

    def _watch_forever(self) -> None:
        reported: str | None = None
        while not self._stop.is_set():
            self._event_arrived(self.poll_seconds)
            if self._stop.is_set():
                return
            try:
                self.refresh()
            except Exception as exc:  # the thread must outlive any failure (nothing serves yet); say it once
                if str(exc) != reported:
                    logger.warning("no model to serve yet: %s", exc)
                reported = str(exc)

    def start(self) -> None:
        """Start the watcher thread (``watch=True``); called by the first call, or earlier."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch_forever, name="model-watch", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the watcher (before its ``events`` consumer is closed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.poll_seconds + 10.0)

    def __call__(self) -> ServingModel:
        if self._model is None:
            self.refresh()
        if self.watch:
            self.start()
            if not self._loaded.is_set() and time.monotonic() - self._change_seen > self.stale_seconds:
                self._loaded.wait(LOAD_WAIT_SECONDS)  # do not score with a champion that was replaced long ago
        elif self._event_arrived(0) or time.monotonic() - self._checked > self.poll_seconds:
            self.refresh()
        assert self._model is not None  # noqa: S101 - refresh raised otherwise
        return self._model
