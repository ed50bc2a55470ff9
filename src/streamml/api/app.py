"""``create_app(settings)``: clients made in the lifespan, one router per resource, errors as JSON."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram

from streamml.config import Settings
from streamml.errors import (
    ModelUnavailableError,
    NotFoundError,
    PoisonMessageError,
    StreamMLError,
    TransientError,
    UpstreamError,
)
from streamml.streaming.serving import ChampionModel

logger = logging.getLogger(__name__)

DESCRIPTION = """Predict whether a user will rate a movie 4.0 or more, through the scorer's own code path, and
operate the platform: the model registry, training runs, datasets and Airflow pipelines.
Mutating endpoints need the header `X-API-Key` (STREAMML_API__API_KEY in `.env`)."""


def _status_of(exc: StreamMLError) -> int:
    if isinstance(exc, NotFoundError):
        return status.HTTP_404_NOT_FOUND
    if isinstance(exc, TransientError | ModelUnavailableError):
        return status.HTTP_503_SERVICE_UNAVAILABLE
    if isinstance(exc, PoisonMessageError):
        return status.HTTP_422_UNPROCESSABLE_CONTENT
    if isinstance(exc, UpstreamError):
        return status.HTTP_502_BAD_GATEWAY
    return status.HTTP_409_CONFLICT  # the platform's state does not allow it (e.g. no previous champion)


def create_app(settings: Settings) -> FastAPI:
    from streamml.airflow_client import AirflowClient
    from streamml.api.deps import Limits, Services, brief, summary
    from streamml.api.routes import catalog, models, pipelines, predict, system
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.scorer import ScorerHandler

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        features = RedisFeatureStore(redis_client(settings.redis))
        # Follows the aliases from a thread of its own; promotions through this API also refresh it at once.
        champion = ChampionModel(
            settings.mlflow.tracking_uri,
            poll_seconds=settings.scorer.model_poll_seconds,
            watch=True,
            signing_key=settings.mlflow.signing_key.get_secret_value(),
        )
        champion.start()
        airflow = AirflowClient(settings.airflow)
        limits = Limits(settings.api.max_streams, settings.api.trigger_interval_seconds)
        app.state.services = Services(settings, ScorerHandler(features, champion), champion, airflow, features, limits)
        try:
            yield
        finally:
            champion.close()
            airflow.close()
            features.client.close()

    app = FastAPI(title="streamml API", version="1", description=DESCRIPTION, lifespan=lifespan)
    registry = CollectorRegistry()
    app.state.registry = registry
    requests = Counter("streamml_api_requests", "HTTP requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("streamml_api_request_seconds", "HTTP request latency", ["route"], registry=registry)

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """413 for a body over STREAMML_API__MAX_BODY_BYTES, declared or streamed (chunked), before it is read."""
        limit = settings.api.max_body_bytes
        too_big = JSONResponse(
            {"detail": f"request body over {limit} bytes (STREAMML_API__MAX_BODY_BYTES)"},
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
        )
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return too_big
        if declared is None and request.method in ("POST", "PUT", "PATCH"):
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    return too_big
            request._body = body  # noqa: SLF001 - the routes read the body already received
        return await call_next(request)

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        requests.labels(request.method, route, str(response.status_code)).inc()
        latency.labels(route).observe(time.perf_counter() - t0)
        return response

    @app.exception_handler(StreamMLError)
    async def platform_error(_: Request, exc: StreamMLError) -> JSONResponse:
        code = _status_of(exc)
        logger.log(logging.WARNING if code >= 500 else logging.INFO, "%s: %s", type(exc).__name__, exc)
        return JSONResponse({"detail": summary(exc) if code >= 500 else str(exc)}, status_code=code)

    @app.exception_handler(RequestValidationError)
    async def bad_input(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": brief(exc)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": f"internal error ({type(exc).__name__}); see the API log"},
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    for module in (system, predict, models, catalog, pipelines):
        app.include_router(module.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with every 422 declared as what the API sends: a ``Problem`` (``detail`` a string), not
    FastAPI's list of validation errors."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if "422" in operation.get("responses", {}):
                    operation["responses"]["422"] = {"description": "The request is invalid", "content": problem}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        components.setdefault("Problem", {
            "title": "Problem", "type": "object", "required": ["detail"],
            "properties": {"detail": {"title": "Detail", "type": "string"}},
        })  # fmt: skip
        app.openapi_schema = schema
    return app.openapi_schema
