"""Train, register, gate, promote and roll back against the running MLflow (artifacts in MinIO) and Kafka.

Uses feature version 1 as built on the running stack by the training DAG; every test has its own model name,
experiment and event topic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from confluent_kafka import Consumer
from mlflow.tracking import MlflowClient

from streamml import names
from streamml.config import Settings
from streamml.errors import StreamMLError
from streamml.features import spec
from streamml.models import registry
from streamml.models.dataset import load_dataset
from streamml.models.events import ModelEvent
from streamml.models.pyfunc import load_scorer
from streamml.models.train import HGBParams, KNNParams, ModelConfig, run_training
from streamml.stores.objects import s3_client
from streamml.streaming.clients import consumer_config

pytestmark = [pytest.mark.integration, pytest.mark.mlflow, pytest.mark.minio, pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def scope(
    settings: Settings, require: Callable[[str], None], uid: str, training_run: dict[str, Any]
) -> Iterator[dict[str, str]]:
    for service in ("mlflow", "minio", "kafka"):
        require(service)
    names_ = {
        "model": f"test-movielens-like-{uid}",
        "experiment": f"test-models-{uid}",
        "topic": f"test.models.{uid}",
        "feature_version": str(training_run["manifest"]["version"]),
    }
    yield names_
    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    if client.search_registered_models(f"name='{names_['model']}'"):
        client.delete_registered_model(names_["model"])
    if experiment := client.get_experiment_by_name(names_["experiment"]):
        client.delete_experiment(experiment.experiment_id)


def _events(settings: Settings, topic: str, group: str, expected: int) -> list[ModelEvent]:
    consumer = Consumer(consumer_config(settings.kafka, group_id=group))
    consumer.subscribe([topic])
    events: list[ModelEvent] = []
    try:
        for _ in range(30):
            events += [ModelEvent.from_bytes(m.value()) for m in consumer.consume(10, timeout=1.0) if not m.error()]
            if len(events) >= expected:
                break
    finally:
        consumer.close()
    return events


def test_train_register_gate_promote_and_roll_back(
    settings: Settings, scope: dict[str, str], uid: str, tmp_path: Path
) -> None:
    model, topic = scope["model"], scope["topic"]
    tracking = settings.mlflow.tracking_uri
    client = MlflowClient(tracking_uri=tracking)

    small = ModelConfig(hgb=HGBParams(max_iter=200))  # the default model type, fewer trees: the test, not the fit
    first = run_training(
        settings, int(scope["feature_version"]), small, model_name=model, experiment=scope["experiment"]
    )
    assert first["version"] == 1
    assert first["metrics"]["streaming_auc"] > first["metrics"]["streaming_baseline_user_auc"]
    assert client.get_model_version_by_alias(model, names.ALIAS_CHALLENGER).version == "1"
    gate = registry.promote_if_better(settings, 1, model_name=model, topic=topic)
    assert gate["promote"] and gate["champion_version"] is None
    assert client.get_model_version_by_alias(model, names.ALIAS_CHAMPION).version == "1"
    again = registry.promote_if_better(settings, 1, model_name=model, topic=topic)  # a retried DAG task
    assert again["promote"] and again["reason"] == "already the champion"

    run = client.get_run(first["run_id"])
    assert run.info.experiment_id == client.get_experiment_by_name(scope["experiment"]).experiment_id
    assert run.data.params["feature_version"] == str(int(scope["feature_version"]))
    assert run.data.params["model_type"] == "hgb"
    assert len(run.data.tags["git_commit"]) in (40, len("unknown"))
    assert run.data.metrics["streaming_auc"] == pytest.approx(first["metrics"]["streaming_auc"])
    assert {"frozen_auc", "streaming_baseline_user_auc", "frozen_baseline_movie_log_loss"} <= set(run.data.metrics)
    assert run.data.tags["gate.decision"] == "promote"

    # Artifacts come back through the server, and they live in the mlflow bucket on MinIO.
    confusion = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=first["run_id"],
                artifact_path="confusion_matrix.json",
                dst_path=str(tmp_path),
                tracking_uri=tracking,
            )
        ).read_text()
    )
    stream = load_dataset(settings, int(scope["feature_version"])).stream
    assert sum(map(sum, confusion["matrices"]["streaming"])) == len(stream.labels)
    keys = [
        item["Key"]
        for page in s3_client(settings.minio)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=names.BUCKET_MLFLOW, Prefix=f"{run.info.experiment_id}/")
        for item in page.get("Contents", [])
    ]
    assert any(key.endswith(f"{first['run_id']}/artifacts/permutation_importance.png") for key in keys)

    # The champion loads by alias and its fast path reproduces the logged metric.
    scorer = load_scorer(f"models:/{model}@{names.ALIAS_CHAMPION}", tracking)
    scores = scorer(stream.features["streaming"])
    assert ((scores >= 0) & (scores <= 1)).all()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(stream.labels, scores) == pytest.approx(first["metrics"]["streaming_auc"], abs=1e-9)

    # The drift monitor's reference: the version's profile, fetched from its run, is of its streaming evaluation set.
    from streamml.models.profile import ProfileSource

    reference = ProfileSource(tracking, model)("1")
    assert reference is not None and set(reference.features) == set(spec.FEATURE_NAMES)
    assert reference.rows == len(stream.labels) and reference.score.psi(scores) == pytest.approx(0.0, abs=1e-9)
    assert ProfileSource(tracking, model)("99") is None  # no such version: no profile, no error

    # A clearly worse model is registered as challenger but does not displace the champion.
    worse_config = ModelConfig(model_type="knn", knn=KNNParams(n_neighbors=1), importance_rows=200)
    worse = run_training(
        settings, int(scope["feature_version"]), worse_config, model_name=model, experiment=scope["experiment"]
    )
    assert worse["version"] == 2
    gate = registry.promote_if_better(settings, 2, model_name=model, topic=topic)
    assert not gate["promote"]
    assert gate["champion_version"] == 1
    assert gate["champion_auc"] == pytest.approx(first["metrics"]["streaming_auc"])
    assert gate["candidate_auc"] == pytest.approx(worse["metrics"]["streaming_auc"])
    assert client.get_model_version_by_alias(model, names.ALIAS_CHAMPION).version == "1"
    assert client.get_model_version_by_alias(model, names.ALIAS_CHALLENGER).version == "2"
    worse_run = client.get_run(worse["run_id"])
    assert worse_run.data.tags["gate.decision"] == "reject"
    assert worse_run.data.metrics["gate_champion_streaming_auc"] == pytest.approx(gate["champion_auc"])

    # Forced promotion remembers the previous champion; rollback follows it back.
    registry.promote(settings, 2, model_name=model, topic=topic)
    assert client.get_model_version(model, "2").tags[registry.PREVIOUS_CHAMPION_TAG] == "1"
    assert registry.champion_version(settings, model) == 2
    back = registry.rollback(settings, model_name=model, topic=topic)
    assert back["version"] == 1 and back["rolled_back_from"] == 2
    assert registry.champion_version(settings, model) == 1
    with pytest.raises(StreamMLError, match="no previous champion"):
        registry.rollback(settings, model_name=model, topic=topic)

    events = _events(settings, topic, f"test-{uid}", expected=4)
    assert [(e.kind, e.version, e.previous_version) for e in events] == [
        ("promoted", 1, None),
        ("promoted", 1, None),  # re-sent, so a scorer that missed it still reloads
        ("promoted", 2, 1),
        ("rolled_back", 1, 2),
    ]
    assert all(e.model_name == model and e.alias == names.ALIAS_CHAMPION for e in events)
    assert events[0].run_id == first["run_id"]
    assert events[0].metrics["streaming_auc"] == pytest.approx(first["metrics"]["streaming_auc"])
    assert np.isfinite(list(events[1].metrics.values())).all()
