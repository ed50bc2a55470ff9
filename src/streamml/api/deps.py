"""What the routes depend on: the clients created at startup, and the API key check."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from streamml.airflow_client import AirflowClient
from streamml.config import Settings
from streamml.stores.features import RedisFeatureStore
from streamml.streaming.scorer import ScorerHandler
from streamml.streaming.serving import ChampionModel


@dataclass
class Services:
    """Created once per app in the lifespan; routes receive it through :func:`services`."""

    settings: Settings
    scorer: ScorerHandler
    champion: ChampionModel
    airflow: AirflowClient
    features: RedisFeatureStore
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
