"""movielens_retrain's gate on the real MLflow and Kafka: with enough shadow evidence for the challenger against the
current champion it decides on their online AUCs (both ways); without it in time the offline gate decides. The model
is the test's own registered name (versions of a small LikeModel with the test's own streaming AUCs), and events go to
the test's own topic."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from streamml.config import Settings
from streamml.features import spec
from streamml.models import registry
from streamml.models.online_gate import ShadowEvidence, promote_on_evidence
from streamml.models.pyfunc import LikeModel
from streamml.streaming.clients import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.mlflow, pytest.mark.minio, pytest.mark.kafka]


@pytest.fixture
def versions(settings: Settings, require: Callable[[str], None], uid: str) -> Iterator[dict[str, Any]]:
    """Model ``test-gate-{uid}``: version 1 (streaming AUC 0.80, champion), 2 (0.81) and 3 (0.79)."""
    for service in ("mlflow", "minio", "kafka"):
        require(service)
    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    experiment = mlflow.set_experiment(f"test-gate-{uid}")
    name = f"test-gate-{uid}"
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, spec.N_FEATURES))
    estimator = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    topic = f"test.gate.{uid}"
    ensure_topics(settings.kafka, [topic])
    try:
        for auc in (0.80, 0.81, 0.79):
            with mlflow.start_run(experiment_id=experiment.experiment_id):
                mlflow.log_params({"feature_version": 1})
                mlflow.log_metric("streaming_auc", auc)
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=LikeModel(estimator), pip_requirements=["scikit-learn"]
                )
            mlflow.register_model(info.model_uri, name)
        registry.promote(settings, 1, model_name=name, topic=topic)
        yield {"name": name, "topic": topic, "client": client}
    finally:
        if client.search_registered_models(f"name='{name}'"):
            client.delete_registered_model(name)
        client.delete_experiment(experiment.experiment_id)


def gate(settings: Settings, v: dict[str, Any], version: int, evidence: ShadowEvidence | None) -> dict[str, Any]:
    return promote_on_evidence(
        settings, version, 0.002, min_pairs=100, wait_seconds=0.0, min_class=50, evidence=lambda: evidence,
        model_name=v["name"], topic=v["topic"],
    )  # fmt: skip


def run_tags(v: dict[str, Any], version: int) -> dict[str, str]:
    run_id = v["client"].get_model_version(v["name"], str(version)).run_id
    return dict(v["client"].get_run(run_id).data.tags)


def test_online_evidence_decides_both_ways_and_is_recorded(settings: Settings, versions: dict[str, Any]) -> None:
    # Version 3 is worse offline (0.79 < 0.80) but better online on the same shadowed requests: promoted.
    result = gate(
        settings,
        versions,
        3,
        ShadowEvidence(1, 3, paired=500, champion_auc=0.70, challenger_auc=0.75, likes=150, window=500),
    )
    assert result["evidence"] == "online" and result["promote"] and result["paired"] == 500
    assert registry.champion_version(settings, versions["name"]) == 3
    tags = run_tags(versions, 3)
    assert tags["gate.evidence"] == "online" and tags["gate.decision"] == "promote"
    # Version 2 is better offline (0.81) but worse online than champion 3: rejected, 3 stays.
    result = gate(
        settings,
        versions,
        2,
        ShadowEvidence(3, 2, paired=500, champion_auc=0.75, challenger_auc=0.74, likes=150, window=500),
    )
    assert result["evidence"] == "online" and not result["promote"]
    assert registry.champion_version(settings, versions["name"]) == 3


def test_without_enough_evidence_for_this_pair_the_offline_gate_decides(
    settings: Settings, versions: dict[str, Any]
) -> None:
    too_few = ShadowEvidence(1, 2, paired=99, champion_auc=0.5, challenger_auc=0.9, likes=40, window=99)
    other_pair = ShadowEvidence(5, 2, paired=5000, champion_auc=0.9, challenger_auc=0.5, likes=900, window=5000)
    lopsided = ShadowEvidence(1, 3, paired=1200, champion_auc=0.5, challenger_auc=0.9, likes=10, window=1200)
    for evidence in (None, too_few, other_pair, lopsided):
        assert gate(settings, versions, 3, evidence)["evidence"] == "offline"  # 0.79 < 0.80: not promoted
    assert registry.champion_version(settings, versions["name"]) == 1
    result = gate(settings, versions, 2, too_few)  # 0.81 > 0.80 + 0.002 offline
    assert result["evidence"] == "offline" and result["promote"]
    assert registry.champion_version(settings, versions["name"]) == 2
    assert run_tags(versions, 2)["gate.evidence"] == "offline"


def test_a_champion_moved_while_the_gate_ran_voids_its_decision(settings: Settings, versions: dict[str, Any]) -> None:
    """Someone promotes version 2 by hand while the gate is comparing 3 with champion 1: 3 must not replace 2 on
    the strength of a comparison with 1."""
    better_than_1 = ShadowEvidence(1, 3, paired=500, champion_auc=0.70, challenger_auc=0.75, likes=150, window=500)

    def evidence_while_someone_promotes_2() -> ShadowEvidence:
        if registry.champion_version(settings, versions["name"]) == 1:
            registry.promote(settings, 2, model_name=versions["name"], topic=versions["topic"])
        return better_than_1

    result = promote_on_evidence(
        settings, 3, 0.002, min_pairs=100, wait_seconds=0.0, min_class=50,
        evidence=evidence_while_someone_promotes_2, model_name=versions["name"], topic=versions["topic"],
    )  # fmt: skip
    assert not result["promote"] and "moved to version 2" in result["reason"], result
    assert registry.champion_version(settings, versions["name"]) == 2
    assert run_tags(versions, 3)["gate.decision"] == "reject"
