"""The API against the real stack: the supervised `streamml api` program over HTTP, and create_app in-process."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from streamml import names
from streamml.api import create_app
from streamml.config import Settings
from streamml.features import packing, spec
from streamml.stores.features import RedisFeatureStore
from streamml.stores.redis_client import redis_client
from streamml.verification.streaming import pyfunc_scores

pytestmark = [pytest.mark.integration, pytest.mark.mlflow, pytest.mark.redis, pytest.mark.airflow]


@pytest.fixture(scope="module")
def api(settings: Settings, require: Callable[[str], None], training_run: dict[str, Any]) -> Iterator[TestClient]:
    for service in ("kafka", "redis", "minio", "mlflow", "airflow"):
        require(service)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def key(settings: Settings) -> dict[str, str]:
    return {"X-API-Key": settings.api.api_key.get_secret_value()}


def test_supervised_api_program_is_ready(settings: Settings, require: Callable[[str], None]) -> None:
    require("api")
    resp = httpx.get(f"{settings.api.base_url}/ready", timeout=30)
    assert resp.status_code == 200, resp.text
    assert set(resp.json()["checks"]) == {"kafka", "redis", "minio", "mlflow", "airflow"}
    assert httpx.get(f"{settings.api.base_url}/docs", timeout=10).status_code == 200


def test_predict_matches_an_offline_computation_with_the_same_model_and_features(
    api: TestClient, settings: Settings
) -> None:
    from streamml.features.batch import read_part

    version = int(RedisFeatureStore(redis_client(settings.redis)).current_version() or 0)
    part = read_part(settings, version, "stream", columns=["userId", "movieId", "timestamp"])
    # 50 rows spread over the stream period in time order (the part's own order is by user: the first rows may all
    # be one user new after the cutoff)
    part = part.sort_by([("timestamp", "ascending"), ("userId", "ascending"), ("movieId", "ascending")])
    part = part.take(np.linspace(0, part.num_rows - 1, 50).astype(int)).to_pydict()
    items = [
        {"user_id": u, "movie_id": m, "event_ts": t}
        for u, m, t in zip(part["userId"], part["movieId"], part["timestamp"], strict=True)
    ]
    items.append({"user_id": 10**9, "movie_id": 10**9})  # nobody: prior features, flagged
    resp = api.post("/predict", json={"items": items})
    assert resp.status_code == 200, resp.text
    out = resp.json()["predictions"]
    assert [(p["user_id"], p["movie_id"]) for p in out] == [(i["user_id"], i["movie_id"]) for i in items]
    assert out[-1]["cold_start"] is True and not all(p["cold_start"] for p in out)
    assert {p["feature_version"] for p in out} == {version}
    # Offline: the feature definition on the states in Redis (nothing changes them in this test), scored by the
    # registered model through mlflow.pyfunc.
    store = RedisFeatureStore(redis_client(settings.redis))
    blobs = store.get_many(version, [i["user_id"] for i in items[:-1]], [i["movie_id"] for i in items[:-1]])
    k = len(items) - 1
    globals_state = packing.unpack_globals(blobs[-1])
    expected = np.array([
        spec.features_from_states(
            packing.unpack_user(u) if u else None, packing.unpack_movie(m) if m else None, globals_state, i["event_ts"]
        )[0]
        for u, m, i in zip(blobs[:k], blobs[k : 2 * k], items[:-1], strict=True)
    ])  # fmt: skip
    offline = pyfunc_scores(settings, out[0]["model_name"], out[0]["model_version"], expected)
    np.testing.assert_allclose([p["score"] for p in out[:-1]], offline, atol=1e-9)
    assert all(p["label"] == int(p["score"] >= 0.5) for p in out)


def test_bad_input_gets_a_clear_4xx(api: TestClient) -> None:
    cases = [
        ({"items": []}, "at least 1 item"),
        ({"items": [{"user_id": -1, "movie_id": 1}]}, "items.0.user_id"),
        ({"items": [{"user_id": "x", "movie_id": 1}]}, "items.0.user_id"),
        ({"pairs": []}, "items"),
    ]
    for body, expected in cases:
        resp = api.post("/predict", json=body)
        assert resp.status_code == 422, body
        assert expected in resp.json()["detail"], resp.json()
    resp = api.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 422
    assert api.get("/report/999999").status_code == 404
    assert api.get("/report/abc").status_code == 422


def test_models_runs_datasets_and_report(api: TestClient, training_run: dict[str, Any]) -> None:
    models = api.get("/models").json()
    assert models["name"] == names.MODEL_NAME
    champion = models["aliases"][names.ALIAS_CHAMPION]
    row = next(v for v in models["versions"] if v["version"] == champion)
    assert names.ALIAS_CHAMPION in row["aliases"] and 0.5 < row["metrics"]["streaming_auc"] <= 1.0

    report = api.get(f"/report/{champion}").json()
    assert report["version"] == champion and report["model_type"] != "unknown"
    assert {"streaming", "frozen"} <= set(report["metrics"]) and "auc" in report["metrics"]["streaming"]
    matrix = np.array(report["confusion_matrix"]["streaming"])
    assert matrix.shape == (2, 2) and matrix.sum() == training_run["manifest"]["rows"]["stream"]
    assert report["feature_importance"] and "like" in report["classification_report"]["streaming"]

    runs = api.get("/runs", params={"limit": 5}).json()["runs"]
    assert runs and all("params" in r and "metrics" in r for r in runs)
    assert row["run_id"] in {r["run_id"] for r in api.get("/runs", params={"limit": 200}).json()["runs"]}

    datasets = api.get("/datasets").json()
    snapshot = training_run["manifest"]["snapshot"]
    snap = next(s for s in datasets["snapshots"] if s["snapshot"] == snapshot)
    rows = training_run["manifest"]["rows"]
    assert snap["ratings"] == rows["history"] + rows["stream"]
    assert any(f["rows"] == rows for f in datasets["feature_versions"])


def test_mutations_need_the_api_key_then_promote_and_roll_back(
    api: TestClient, key: dict[str, str], settings: Settings
) -> None:
    assert api.post("/models/rollback").status_code == 401
    assert api.post("/models/1/promote", headers={"X-API-Key": "wrong"}).status_code == 401
    assert api.post("/pipelines/movielens_training/trigger", json={}).status_code == 401

    # A second version of the platform's model from the champion's own artifact, signed as training signs it, so the
    # test does not depend on how many versions earlier tests registered; rollback below restores the champion.
    from streamml.models.integrity import sign_version
    from streamml.stores.mlflow_client import client

    mlflow_client = client(settings.mlflow)
    current = mlflow_client.get_model_version_by_alias(names.MODEL_NAME, names.ALIAS_CHAMPION)
    champion = str(current.version)

    def copy_of_champion() -> str:
        model_id = current.source.removeprefix("models:/")
        version = mlflow_client.create_model_version(
            names.MODEL_NAME, current.source, current.run_id, model_id=model_id
        )
        return str(version.version)

    other = copy_of_champion()
    sign_version(
        mlflow_client,
        settings.mlflow.tracking_uri,
        names.MODEL_NAME,
        other,
        settings.mlflow.signing_key.get_secret_value(),
    )
    promoted = api.post(f"/models/{other}/promote", headers={**key, "X-Streamml-Actor": "dashboard:tester"})
    assert promoted.status_code == 200, promoted.text
    audit = mlflow_client.get_model_version(names.MODEL_NAME, other).tags["streamml.promoted"]
    assert audit.endswith("promoted through the API by dashboard:tester"), audit
    assert api.get("/models").json()["aliases"][names.ALIAS_CHAMPION] == other
    assert (
        api.post("/predict", json={"items": [{"user_id": 1, "movie_id": 1}]}).json()["predictions"][0]["model_version"]
        == other
    )

    # A forged version (the same files, registered by hand: no signature) made champion straight in MLflow, as anyone
    # who can reach it could: the API refuses to load it and keeps serving the signed one.
    forged = copy_of_champion()
    mlflow_client.set_registered_model_alias(names.MODEL_NAME, names.ALIAS_CHAMPION, forged)
    serving = api.app.state.services.champion  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while "carries no streamml.signature" not in (serving.last_error or ""):
        assert time.monotonic() < deadline, f"the API did not refuse version {forged}: {serving.last_error}"
        time.sleep(0.5)
    answer = api.post("/predict", json={"items": [{"user_id": 1, "movie_id": 1}]}).json()
    assert answer["predictions"][0]["model_version"] == other
    mlflow_client.set_registered_model_alias(names.MODEL_NAME, names.ALIAS_CHAMPION, other)

    back = api.post("/models/rollback", headers=key)
    assert back.status_code == 200, back.text
    assert back.json()["version"] == int(champion)
    assert api.get("/models").json()["aliases"][names.ALIAS_CHAMPION] == champion
    assert api.post("/models/999999/promote", headers=key).status_code == 404


def test_trigger_streams_a_real_dag_run_to_its_end(api: TestClient, key: dict[str, str]) -> None:
    assert api.post("/pipelines/no_such_dag/trigger", headers=key, json={}).status_code == 404
    dags = {d["dag_id"] for d in api.get("/pipelines").json()["dags"]}
    assert {names.DAG_TRAINING, names.DAG_BATCH_SCORING} <= dags
    resp = api.post(f"/pipelines/{names.DAG_BATCH_SCORING}/trigger", headers=key, json={"conf": {}})
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["run_id"]

    events: list[tuple[str, dict[str, Any]]] = []
    with api.stream("GET", f"/pipelines/runs/{run_id}/events", params={"poll_seconds": 1}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    assert events[-1] == ("end", {"state": "success"}), events
    statuses = [data for kind, data in events if kind == "status"]
    assert statuses[-1]["tasks"] and set(statuses[-1]["tasks"].values()) == {"success"}
    assert len(statuses) >= 2  # it saw the run change, not only its end
    runs = api.get(f"/pipelines/{names.DAG_BATCH_SCORING}/runs", params={"limit": 5}).json()["runs"]
    assert run_id in {r["run_id"] for r in runs}
    assert api.get("/pipelines/runs/no-such-run/events").status_code == 404


def test_a_dependency_outage_is_a_503_naming_it(settings: Settings, require: Callable[[str], None]) -> None:
    require("redis")
    import socket

    with socket.socket() as sock:  # a port nobody listens on: Redis is "down" for this app only
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    broken = settings.model_copy(update={"redis": settings.redis.model_copy(update={"port": dead})})
    with TestClient(create_app(broken), raise_server_exceptions=False) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and list(ready.json()["down"]) == ["redis"], ready.text
        resp = client.post("/predict", json={"items": [{"user_id": 1, "movie_id": 1}]})
        assert resp.status_code == 503, resp.text
        assert "Redis" in resp.json()["detail"] and "Traceback" not in resp.text
