"""The API client against httpx's mock transport: which calls send the key, how errors and a down API read."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from streamml.dashboard import api_client, frames_predict
from streamml.dashboard.api_client import ApiClient
from streamml.dashboard.errors import ApiError, ServiceDown


def api(handler: Callable[[httpx.Request], httpx.Response]) -> ApiClient:
    return ApiClient("http://api.test", "secret-key", transport=httpx.MockTransport(handler))


def test_api_client_sends_the_key_only_on_mutating_calls() -> None:
    seen: list[tuple[str, str, str | None, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("X-API-Key"), request.content))
        if request.url.path == "/models":
            return httpx.Response(200, json={"name": "m", "aliases": {}, "versions": []})
        if request.url.path.endswith("/trigger"):
            return httpx.Response(200, json={"dag_id": "d", "run_id": "manual__1", "state": "queued"})
        return httpx.Response(200, json={"version": 3})

    client = api(handler)
    client.models()
    client.promote(3)
    assert client.trigger("movielens_training", {"quantile": 0.8})["run_id"] == "manual__1"
    assert seen[0][:3] == ("GET", "/models", None)
    assert seen[1][:3] == ("POST", "/models/3/promote", "secret-key")
    assert seen[2][:3] == ("POST", "/pipelines/movielens_training/trigger", "secret-key")
    assert json.loads(seen[2][3]) == {"conf": {"quantile": 0.8}}


def test_api_errors_carry_the_detail() -> None:
    client = api(lambda r: httpx.Response(404, json={"detail": "no version 9 of movielens-like"}))
    with pytest.raises(ApiError, match="404: no version 9") as info:
        client.report(9)
    assert info.value.status == 404
    client = api(lambda r: httpx.Response(500, text="Internal Server Error"))
    with pytest.raises(ApiError, match="500: Internal Server Error"):
        client.models()


def test_api_down_is_a_service_down() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(ServiceDown, match=r"The API at http://api.test is not reachable: \[Errno 111\]"):
        api(refuse).pipelines()


def test_ready_reports_which_services_are_down() -> None:
    body = {"detail": "not ready", "down": {"mlflow": "ConnectError"}}
    ready = api(lambda r: httpx.Response(503, json=body)).ready()
    assert not ready.ok and ready.down == {"mlflow": "ConnectError"} and ready.detail == "not ready"
    ok = api(lambda r: httpx.Response(200, json={"status": "ready", "checks": {"redis": "PONG"}})).ready()
    assert ok.ok and ok.checks == {"redis": "PONG"}


def test_predict_posts_the_items() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        preds = [{**i, "score": 0.7, "label": 1, "cold_start": False, "model_name": "m", "model_version": "3",
                  "feature_version": 1} for i in items]  # fmt: skip
        return httpx.Response(200, json={"predictions": preds})

    predictions = api(handler).predict([{"user_id": 1, "movie_id": 2}, {"user_id": 3, "movie_id": 4}])
    frame = frames_predict.predictions_frame(predictions)
    assert frame["movie_id"].tolist() == [2, 4]
    assert frame["label"].tolist() == ["like (>= 4)", "like (>= 4)"]
    assert list(frame.columns) == list(frames_predict.PREDICTION_COLUMNS)


def test_api_base_url_prefers_the_dashboard_setting() -> None:
    from streamml.config import ApiSettings, DashboardSettings, Settings

    default = Settings(mode="docker", api=ApiSettings(host="10.0.0.5", port=9000, api_key="a-real-key"))
    assert api_client.api_base_url(default) == "http://10.0.0.5:9000"
    explicit = Settings(dashboard=DashboardSettings(api_url="http://api:8000/", admin_password="a-real-password"))
    assert api_client.api_base_url(explicit) == "http://api:8000"


def test_mutations_carry_the_signed_in_user_for_the_audit_trail() -> None:
    actors: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        actors.append(request.headers.get(api_client.ACTOR_HEADER))
        return httpx.Response(200, json={"run_id": "manual__1", "version": 3})

    client = api(handler)
    client.promote(3, actor="dashboard:admin")
    client.rollback(actor="dashboard:admin")
    client.trigger("batch_scoring", actor="dashboard:admin")
    client.models()
    assert actors == ["dashboard:admin"] * 3 + [None]


def test_sign_in_needs_the_user_and_the_password_from_env() -> None:
    from streamml.config import Settings
    from streamml.dashboard.auth import credentials_match

    settings = Settings(_env_file=None)
    password = settings.dashboard.admin_password.get_secret_value()
    assert credentials_match(settings, "admin", password)
    assert not credentials_match(settings, "admin", password + "x")
    assert not credentials_match(settings, "root", password)
    assert not credentials_match(settings, "admin", "")
