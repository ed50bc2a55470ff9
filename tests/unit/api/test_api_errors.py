"""The API's contract without servers: liveness, key checks, input validation, error mapping, Prometheus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from streamml.api import create_app
from streamml.api.app import _status_of
from streamml.config import Settings
from streamml.errors import ModelUnavailableError, NotFoundError, StreamMLError, TransientError


@pytest.fixture
def client() -> Iterator[TestClient]:
    # Clients are created lazily; nothing here connects to a server.
    with TestClient(create_app(Settings(_env_file=None)), raise_server_exceptions=False) as c:
        yield c


def test_health_is_alive_without_dependencies(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/models/1/promote"), ("post", "/models/rollback"), ("post", "/pipelines/movielens_training/trigger")],
)
def test_mutating_endpoints_answer_401_without_the_key(client: TestClient, method: str, path: str) -> None:
    for headers in ({}, {"X-API-Key": "wrong"}):
        resp = client.request(method, path, headers=headers, json={})
        assert resp.status_code == 401
        assert "X-API-Key" in resp.json()["detail"]


def test_bad_input_is_a_422_with_a_readable_reason(client: TestClient) -> None:
    resp = client.post("/predict", json={"items": [{"user_id": 1}]})
    assert resp.status_code == 422
    assert resp.json() == {"detail": "items.0.movie_id: Field required"}
    assert client.post("/predict", json={"items": [{"user_id": 1, "movie_id": 2}] * 1001}).status_code == 422
    assert client.get("/runs", params={"limit": 0}).status_code == 422
    assert client.get("/pipelines/bad%20id/runs").status_code == 422


def test_platform_errors_map_to_4xx_or_503() -> None:
    assert _status_of(NotFoundError("x")) == 404
    assert _status_of(TransientError("x")) == 503
    assert _status_of(ModelUnavailableError("x")) == 503
    assert _status_of(StreamMLError("no previous champion")) == 409


def test_prometheus_counts_requests_by_route_and_status(client: TestClient) -> None:
    client.get("/health")
    client.post("/models/rollback")
    text = client.get("/metrics").text
    assert 'streamml_api_requests_total{method="GET",route="/health",status="200"} 1.0' in text
    assert 'streamml_api_requests_total{method="POST",route="/models/rollback",status="401"} 1.0' in text


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {
        "/health",
        "/ready",
        "/predict",
        "/models",
        "/models/{version}/promote",
        "/models/rollback",
        "/runs",
        "/datasets",
        "/report/{version}",
        "/pipelines/{dag_id}/trigger",
        "/pipelines/runs/{run_id}/events",
        "/metrics",
    } <= paths
