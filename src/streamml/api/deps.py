"""What the routes depend on: the clients created at startup, the limits, the API key check, and how errors are
worded for callers."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from streamml.airflow_client import AirflowClient
from streamml.config import Settings
from streamml.stores.features import RedisFeatureStore
from streamml.streaming.scorer import ScorerHandler
from streamml.streaming.serving import ChampionModel


class Limits:
    """What one API process allows at once: open event streams, and how often each DAG may be triggered."""

    def __init__(self, max_streams: int, trigger_interval_seconds: float) -> None:
        self.max_streams = max_streams
        self.trigger_interval = trigger_interval_seconds
        self._streams = 0
        self._triggered: dict[str, float] = {}
        self._lock = threading.Lock()

    def trigger(self, dag_id: str) -> None:
        """Count a trigger of ``dag_id``; 429 when the last one was less than the interval ago."""
        with self._lock:
            now = time.monotonic()
            last = self._triggered.get(dag_id)
            if last is not None and now - last < self.trigger_interval:
                wait = self.trigger_interval - (now - last)
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"{dag_id} was triggered {now - last:.0f} s ago; try again in {wait:.0f} s",
                    headers={"Retry-After": str(max(1, round(wait)))},
                )
            self._triggered[dag_id] = now

    def check_streams(self) -> None:
        """429 when every event-stream slot is taken."""
        if self._streams >= self.max_streams:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"{self.max_streams} event streams are open (STREAMML_API__MAX_STREAMS); close one first",
                headers={"Retry-After": "5"},
            )

    @contextmanager
    def stream_slot(self) -> Iterator[None]:
        """Hold one event-stream slot while the ``with`` lasts; 429 when all are taken."""
        with self._lock:
            self.check_streams()
            self._streams += 1
        try:
            yield
        finally:
            with self._lock:
                self._streams -= 1


def brief(errors: Any) -> str:
    """A readable one-line summary of a pydantic/FastAPI validation error (at most ten problems)."""
    items: Sequence[dict[str, Any]] = errors.errors() if hasattr(errors, "errors") else errors
    problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in items[:10]]
    return "; ".join(problems)


def summary(exc: Exception) -> str:
    """What a caller is told of a failed dependency: which call failed, not what the dependency answered (its body
    can carry internals; the API log has it whole)."""
    head = str(exc).split(": ", 1)[0]
    return f"{head[:200]} (details in the API log)"


@dataclass
class Services:
    """Created once per app in the lifespan; routes receive it through :func:`services`."""

    settings: Settings
    scorer: ScorerHandler
    champion: ChampionModel
    airflow: AirflowClient
    features: RedisFeatureStore
    limits: Limits
    model_lock: threading.Lock = field(default_factory=threading.Lock)


def services(request: Request) -> Services:
    return request.app.state.services


Deps = Annotated[Services, Depends(services)]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="STREAMML_API__API_KEY from .env")


def require_api_key(deps: Deps, key: Annotated[str | None, Security(_api_key_header)]) -> None:
    expected = deps.settings.api.api_key.get_secret_value()
    if key is None or not secrets.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong API key (send header X-API-Key)")


ApiKey = Depends(require_api_key)


def actor(
    who: Annotated[
        str | None,
        Header(
            alias="X-Streamml-Actor",
            pattern=r"^[A-Za-z0-9_.:@-]{1,100}$",
            description="Who asks (the dashboard sends its signed-in user); recorded with the change.",
        ),
    ] = None,
) -> str:
    return who or "api"


Actor = Annotated[str, Depends(actor)]
