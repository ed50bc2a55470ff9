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


def test_ids_and_times_are_json_integers_only(client: TestClient) -> None:
    """schemathesis found ``"event_ts": false`` scored as time 0: a boolean or a numeric string is refused, a number
    without a fraction is an integer (JSON Schema's rule, which the OpenAPI states)."""
    for pair in ({"user_id": 1, "movie_id": 2, "event_ts": False}, {"user_id": True, "movie_id": 2},
                 {"user_id": 1, "movie_id": "2"}):  # fmt: skip
        resp = client.post("/predict", json={"items": [pair]})
        assert resp.status_code == 422, pair
        assert "integer" in resp.json()["detail"]
    fractional = client.post("/predict", json={"items": [{"user_id": 1, "movie_id": 2, "event_ts": 5.5}]})
    assert fractional.status_code == 422


def test_a_body_that_is_not_json_is_a_documented_400(client: TestClient) -> None:
    resp = client.post("/predict", content=b"\xff\xfe{", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["detail"]
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/predict", "/pipelines/{dag_id}/trigger"):
        assert "400" in paths[path]["post"]["responses"], path


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


def key(settings: Settings | None = None) -> dict[str, str]:
    return {"X-API-Key": (settings or Settings(_env_file=None)).api.api_key.get_secret_value()}


def test_a_body_over_the_limit_is_refused_before_it_is_read(client: TestClient) -> None:
    big = b'{"items": [' + b'{"user_id": 1, "movie_id": 1},' * 40_000 + b"]}"
    declared = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413
    assert "STREAMML_API__MAX_BODY_BYTES" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body arrives chunked
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    assert client.post("/predict", content=chunks(), headers={"content-type": "application/json"}).status_code == 413
    small = client.post("/predict", json={"items": [{"user_id": 1}]})
    assert small.status_code == 422, "a small body still reaches validation"

    def small_chunks() -> Iterator[bytes]:
        yield b'{"items": [{"user_id": 1}'
        yield b"]}"

    chunked = client.post("/predict", content=small_chunks(), headers={"content-type": "application/json"})
    assert chunked.json() == {"detail": "items.0.movie_id: Field required"}, "a small chunked body arrives whole"


@pytest.mark.parametrize(
    ("dag", "conf", "problem"),
    [
        ("movielens_training", {"movielens_dir": "/etc"}, "movielens_dir: Extra inputs are not permitted"),
        ("movielens_training", {"quantile": 2}, "quantile: Input should be less than or equal to 0.995"),
        ("movielens_retrain", {"reason": "x" * 501}, "reason: String should have at most 500 characters"),
        ("batch_scoring", {"anything": 1}, "anything: Extra inputs are not permitted"),
    ],
)
def test_trigger_conf_is_checked_per_dag_and_names_no_file(
    client: TestClient, dag: str, conf: dict[str, object], problem: str
) -> None:
    resp = client.post(f"/pipelines/{dag}/trigger", headers=key(), json={"conf": conf})
    assert resp.status_code == 422
    assert resp.json()["detail"] == f"conf of {dag}: {problem}"


def test_only_the_platform_dags_can_be_triggered(client: TestClient) -> None:
    resp = client.post("/pipelines/example_bash_operator/trigger", headers=key(), json={})
    assert resp.status_code == 404
    assert "triggers only batch_scoring, movielens_retrain, movielens_training" in resp.json()["detail"]


def test_limits_refuse_a_second_trigger_too_soon_and_streams_past_the_cap() -> None:
    from fastapi import HTTPException

    from streamml.api.deps import Limits

    limits = Limits(max_streams=2, trigger_interval_seconds=60)
    limits.trigger("movielens_training")
    limits.trigger("batch_scoring")  # each DAG has its own interval
    with pytest.raises(HTTPException) as refused:
        limits.trigger("movielens_training")
    assert refused.value.status_code == 429 and refused.value.headers["Retry-After"] == "60"
    with limits.stream_slot():
        with limits.stream_slot():
            for refused_now in (limits.check_streams, lambda: limits.stream_slot().__enter__()):
                with pytest.raises(HTTPException) as full:
                    refused_now()
                assert full.value.status_code == 429
        with limits.stream_slot():  # a closed stream frees its slot
            pass
    limits.check_streams()


def test_upstream_answers_are_summarised_for_callers() -> None:
    from streamml.api.deps import summary
    from streamml.errors import UpstreamError

    exc = UpstreamError('Airflow POST /api/v2/dags/x/dagRuns answered 400: {"detail": "internal path /opt/x"}')
    assert _status_of(exc) == 502
    assert summary(exc) == "Airflow POST /api/v2/dags/x/dagRuns answered 400 (details in the API log)"


def test_every_422_in_the_openapi_is_the_problem_the_api_sends(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    declared = [
        op["responses"]["422"]["content"]["application/json"]["schema"]
        for ops in schema["paths"].values()
        for op in ops.values()
        if "422" in op.get("responses", {})
    ]
    assert declared and all(s == {"$ref": "#/components/schemas/Problem"} for s in declared)
    assert schema["components"]["schemas"]["Problem"]["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_an_actor_header_that_is_not_a_plain_name_is_refused(client: TestClient) -> None:
    resp = client.post("/models/rollback", headers={**key(), "X-Streamml-Actor": "x\\ny; drop"})
    assert resp.status_code == 422
    assert "X-Streamml-Actor" in resp.json()["detail"] or "x-streamml-actor" in resp.json()["detail"]
