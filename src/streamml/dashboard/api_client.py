"""The Models, Pipelines and Predict pages' source: the platform API over HTTP.

Transport failures raise :class:`~streamml.dashboard.errors.ServiceDown`, error answers
:class:`~streamml.dashboard.errors.ApiError` with the API's ``detail``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from streamml.config import Settings
from streamml.dashboard.errors import ApiError, ServiceDown

ACTOR_HEADER = "X-Streamml-Actor"  # who asked, recorded by the API with each mutation (the signed-in user)


def api_base_url(settings: Settings) -> str:
    """The API the dashboard calls: ``dashboard.api_url`` when set (Compose sets it), else ``api.base_url``."""
    return (settings.dashboard.api_url or settings.api.base_url).rstrip("/")


@dataclass(frozen=True)
class Readiness:
    ok: bool
    checks: dict[str, str] = field(default_factory=dict)
    down: dict[str, str] = field(default_factory=dict)
    detail: str = ""


class ApiClient:
    """The API calls the dashboard makes. Transport failures raise :class:`ServiceDown`, error answers
    :class:`ApiError`. Mutating calls send ``X-API-Key``."""

    def __init__(
        self, base_url: str, api_key: str, timeout: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    @classmethod
    def from_settings(cls, settings: Settings, timeout: float = 10.0) -> ApiClient:
        return cls(api_base_url(settings), settings.api.api_key.get_secret_value(), timeout)

    def close(self) -> None:
        self._http.close()

    def _send(
        self, method: str, path: str, *, mutating: bool = False, actor: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"X-API-Key": self._api_key} if mutating else {}
        if actor is not None:
            headers[ACTOR_HEADER] = actor
        try:
            return self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceDown(f"The API at {self.base_url}", str(exc) or type(exc).__name__) from exc

    def _json(self, method: str, path: str, *, mutating: bool = False, actor: str | None = None, **kwargs: Any) -> Any:
        resp = self._send(method, path, mutating=mutating, actor=actor, **kwargs)
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, _detail(resp))
        try:
            return resp.json()
        except ValueError as exc:
            raise ApiError(resp.status_code, f"not JSON: {resp.text[:200]}") from exc

    def health(self) -> dict[str, Any]:
        return dict(self._json("GET", "/health"))

    def ready(self) -> Readiness:
        resp = self._send("GET", "/ready")
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code == 200:
            return Readiness(True, checks={k: str(v) for k, v in (body.get("checks") or {}).items()})
        down = body.get("down") if isinstance(body, dict) else None
        return Readiness(
            False,
            down={k: str(v) for k, v in (down or {}).items()},
            detail=str(body.get("detail", resp.text[:200])) if isinstance(body, dict) else resp.text[:200],
        )

    def models(self) -> dict[str, Any]:
        return dict(self._json("GET", "/models"))

    def report(self, version: str | int) -> dict[str, Any]:
        return dict(self._json("GET", f"/report/{version}"))

    def promote(self, version: str | int, actor: str | None = None) -> dict[str, Any]:
        return dict(self._json("POST", f"/models/{version}/promote", mutating=True, actor=actor))

    def rollback(self, actor: str | None = None) -> dict[str, Any]:
        return dict(self._json("POST", "/models/rollback", mutating=True, actor=actor))

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self._json("GET", "/runs", params={"limit": limit})["runs"])

    def datasets_catalog(self) -> dict[str, Any]:
        """``{"snapshots": [...], ...}``: raw snapshots and, when the API lists them, feature versions."""
        return dict(self._json("GET", "/datasets"))

    def pipelines(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/pipelines")["dags"])

    def dag_runs(self, dag_id: str, limit: int = 10) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/pipelines/{dag_id}/runs", params={"limit": limit})["runs"])

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, actor: str | None = None) -> dict[str, Any]:
        body = {"conf": dict(conf or {})}
        return dict(self._json("POST", f"/pipelines/{dag_id}/trigger", mutating=True, actor=actor, json=body))

    def predict(self, items: Sequence[Mapping[str, int]]) -> list[dict[str, Any]]:
        body = {"items": [dict(i) for i in items]}
        return list(self._json("POST", "/predict", mutating=True, json=body)["predictions"])


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300] or resp.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if detail is None:
        return json.dumps(body)[:300]
    return detail if isinstance(detail, str) else json.dumps(detail)[:300]
