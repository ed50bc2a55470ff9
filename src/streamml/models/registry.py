"""The MLflow model registry: register versions, gate promotions, promote, roll back. Aliases only, no stages.

A new version gets the alias ``challenger``. The gate (:func:`decide`) makes it ``champion`` only when its streaming
AUC beats the champion's by more than a margin, or when there is no champion. With online evidence
(``online_gate.promote_on_evidence``: the scorer shadow-scored the challenger on live requests, and the aggregator
joined at least N of them with their feedback), the same rule compares the two models' online AUC on those
requests instead; without it, the offline gate decides. Both AUCs are measured on the same
stream: when the champion was evaluated on another feature version, it is re-scored on the candidate's stream
first. Each promotion records the version it replaced in the new champion's ``previous_champion`` tag, which is what
:func:`rollback` follows, and publishes a :class:`~streamml.models.events.ModelEvent` so scorers hot-reload.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from streamml import names
from streamml.config import Settings
from streamml.errors import ModelUnavailableError, StreamMLError
from streamml.models.integrity import load_verified, sign_version
from streamml.stores.mlflow_client import alias_version, client, mlflow_errors

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

DEFAULT_MARGIN = 0.002
"""How much higher the challenger's streaming AUC must be than the champion's."""
GATE_METRIC = "streaming_auc"
PREVIOUS_CHAMPION_TAG = "previous_champion"
PROMOTED_TAG = "streamml.promoted"  # when @champion last moved to the version, by whom and why (the audit trail)


@dataclass(frozen=True)
class GateDecision:
    """The promotion gate's verdict and the numbers it compared."""

    promote: bool
    reason: str
    candidate_auc: float
    champion_auc: float | None
    margin: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(candidate_auc: float, champion_auc: float | None, margin: float = DEFAULT_MARGIN) -> GateDecision:
    """Promote when there is no (comparable) champion, or when ``candidate_auc > champion_auc + margin``."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if math.isnan(candidate_auc):
        return GateDecision(False, "candidate streaming AUC is undefined", candidate_auc, champion_auc, margin)
    if champion_auc is None or math.isnan(champion_auc):
        return GateDecision(True, "no comparable champion", candidate_auc, champion_auc, margin)
    if candidate_auc > champion_auc + margin:
        reason = f"streaming AUC {candidate_auc:.4f} > champion {champion_auc:.4f} + margin {margin:g}"
        return GateDecision(True, reason, candidate_auc, champion_auc, margin)
    reason = f"streaming AUC {candidate_auc:.4f} <= champion {champion_auc:.4f} + margin {margin:g}"
    return GateDecision(False, reason, candidate_auc, champion_auc, margin)


@dataclass(frozen=True)
class VersionInfo:
    """What the gate needs to know about a registered version."""

    version: int
    run_id: str
    feature_version: int | None
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def streaming_auc(self) -> float | None:
        return self.metrics.get(GATE_METRIC)

    def summary(self) -> dict[str, float]:
        return {key: self.metrics[key] for key in names.SUMMARY_METRICS if key in self.metrics}


def _info(mlflow_client: MlflowClient, model_version: ModelVersion) -> VersionInfo:
    if not model_version.run_id:
        raise StreamMLError(f"{model_version.name} version {model_version.version} has no run")
    run = mlflow_client.get_run(model_version.run_id)
    feature_version = run.data.params.get("feature_version") or run.data.tags.get("feature_version")
    return VersionInfo(
        version=int(model_version.version),
        run_id=str(model_version.run_id),
        feature_version=int(feature_version) if feature_version and feature_version != "None" else None,
        metrics=dict(run.data.metrics),
        tags=dict(model_version.tags or {}),
    )


def register(
    settings: Settings, run_id: str, model_uri: str, model_name: str, feature_version: int, model_type: str
) -> int:
    """Register a logged model as a new version of ``model_name`` with alias ``challenger``; return the version."""
    import mlflow

    tags = {"feature_version": str(feature_version), "model_type": model_type, "run_id": run_id}
    with mlflow_errors(f"register {model_uri} as {model_name}"):
        mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
        mlflow.set_registry_uri(settings.mlflow.tracking_uri)
        model_version = mlflow.register_model(model_uri, model_name, tags=tags)
        mlflow_client = client(settings.mlflow)
        key = settings.mlflow.signing_key.get_secret_value()
        sign_version(mlflow_client, settings.mlflow.tracking_uri, model_name, model_version.version, key)
        mlflow_client.set_registered_model_alias(model_name, names.ALIAS_CHALLENGER, model_version.version)
    logger.info("registered model=%s version=%s run_id=%s", model_name, model_version.version, run_id)
    return int(model_version.version)


def champion_version(settings: Settings, model_name: str = names.MODEL_NAME) -> int | None:
    """The version the ``champion`` alias points to, or None."""
    with mlflow_errors(f"read the champion of {model_name}"):
        current = alias_version(client(settings.mlflow), model_name, names.ALIAS_CHAMPION)
    return None if current is None else int(current.version)


def _champion_auc(settings: Settings, model_name: str, champion: VersionInfo, candidate: VersionInfo) -> float | None:
    """The champion's streaming AUC on the candidate's stream: the logged one when both used the same feature version,
    else re-scored; None when the champion cannot score the candidate's features."""
    if champion.feature_version == candidate.feature_version and champion.streaming_auc is not None:
        return champion.streaming_auc
    if candidate.feature_version is None:
        return champion.streaming_auc
    from streamml.models.dataset import load_dataset
    from streamml.models.evaluate import STREAMING, classification_metrics

    logger.info(
        "re-scoring champion version=%d (feature version %s) on feature version %d",
        champion.version,
        champion.feature_version,
        candidate.feature_version,
    )
    stream = load_dataset(settings, candidate.feature_version).stream
    try:
        scorer = load_verified(
            settings.mlflow.tracking_uri, model_name, champion.version, settings.mlflow.signing_key.get_secret_value()
        ).scorer
        scores = scorer(stream.features[STREAMING])
    except (ModelUnavailableError, ValueError) as exc:
        logger.warning("champion version=%d cannot score the candidate's features: %s", champion.version, exc)
        return None
    return classification_metrics(stream.labels, scores)["auc"]


def promote_if_better(
    settings: Settings,
    version: int,
    margin: float = DEFAULT_MARGIN,
    *,
    model_name: str = names.MODEL_NAME,
    topic: str = names.TOPIC_MODEL_EVENTS,
) -> dict[str, Any]:
    """Run the gate for ``version``; promote it (and publish the event) when it passes.

    The numbers and the decision are logged on the candidate's run (metrics ``gate_*``, tags ``gate.*``) and
    returned: ``{"model_name", "version", "champion_version", "promote", "reason", "candidate_auc",
    "champion_auc", "margin"}``. Rerunning after the candidate became champion re-sends its event.
    """
    with mlflow_errors(f"read versions of {model_name}"):
        mlflow_client = client(settings.mlflow)
        candidate = _info(mlflow_client, mlflow_client.get_model_version(model_name, str(version)))
        current = alias_version(mlflow_client, model_name, names.ALIAS_CHAMPION)
        champion = None if current is None else _info(mlflow_client, current)
    if candidate.streaming_auc is None:
        raise StreamMLError(f"{model_name} version {version} has no {GATE_METRIC} on its run {candidate.run_id}")
    if champion is not None and champion.version == candidate.version:
        decision = GateDecision(True, "already the champion", candidate.streaming_auc, champion.streaming_auc, margin)
    else:
        champion_auc = None if champion is None else _champion_auc(settings, model_name, champion, candidate)
        decision = decide(candidate.streaming_auc, champion_auc, margin)
    result = {
        "model_name": model_name,
        "version": version,
        "champion_version": None if champion is None else champion.version,
        **decision.as_dict(),
    }
    with mlflow_errors(f"log the gate decision on run {candidate.run_id}"):
        _log_decision(mlflow_client, candidate.run_id, decision, result["champion_version"])
        mlflow_client.set_model_version_tag(
            model_name, str(version), "gate_decision", "promote" if decision.promote else "reject"
        )
    logger.info("gate model=%s version=%d promote=%s reason=%s", model_name, version, decision.promote, decision.reason)
    if decision.promote:
        result |= promote_as_decided(settings, version, result["champion_version"], decision.reason, model_name, topic)
    return result


def promote_as_decided(
    settings: Settings, version: int, champion: int | None, reason: str, model_name: str, topic: str
) -> dict[str, Any]:
    """Promote ``version`` over ``champion``, the one the gate compared it with; ``{}`` when that happened, else the
    result's corrections (no promotion, and why: also on the candidate's run)."""
    try:
        promote(settings, version, model_name=model_name, topic=topic, reason=reason, replacing=champion)
    except ChampionChanged as exc:
        logger.warning("%s", exc)
        with mlflow_errors(f"record the void gate decision of version {version}"):
            mlflow_client = client(settings.mlflow)
            run_id = run_id_of(settings, model_name, version)
            mlflow_client.set_tag(run_id, "gate.decision", "reject")
            mlflow_client.set_tag(run_id, "gate.reason", str(exc))
            mlflow_client.set_model_version_tag(model_name, str(version), "gate_decision", "reject")
        return {"promote": False, "reason": str(exc)}
    return {}


def _log_decision(mlflow_client: MlflowClient, run_id: str, decision: GateDecision, champion: int | None) -> None:
    mlflow_client.log_metric(run_id, "gate_candidate_streaming_auc", decision.candidate_auc)
    if decision.champion_auc is not None and not math.isnan(decision.champion_auc):
        mlflow_client.log_metric(run_id, "gate_champion_streaming_auc", decision.champion_auc)
    mlflow_client.log_metric(run_id, "gate_margin", decision.margin)
    mlflow_client.log_metric(run_id, "gate_promoted", float(decision.promote))
    mlflow_client.set_tag(run_id, "gate.decision", "promote" if decision.promote else "reject")
    mlflow_client.set_tag(run_id, "gate.reason", decision.reason)
    mlflow_client.set_tag(run_id, "gate.champion_version", "none" if champion is None else str(champion))


class ChampionChanged(StreamMLError):
    """@champion moved (a person, another gate) while a gate compared against the one before: its decision is void."""


_ANY_CHAMPION = object()


def _audit(reason: str) -> str:
    from datetime import UTC, datetime

    return f"{datetime.now(UTC).isoformat(timespec='seconds')} {reason}"[:5000]


def promote(
    settings: Settings,
    version: int,
    *,
    model_name: str = names.MODEL_NAME,
    topic: str = names.TOPIC_MODEL_EVENTS,
    reason: str = "manual promotion",
    replacing: int | None | object = _ANY_CHAMPION,
) -> dict[str, Any]:
    """Point ``champion`` at ``version`` (remembering the one it replaces) and publish the event. A gate passes
    ``replacing``, the champion it compared against: when @champion is another by now, nothing moves and
    :class:`ChampionChanged` says so."""
    from streamml.models.events import ModelEvent, finite_metrics, publish

    with mlflow_errors(f"promote {model_name} version {version}"):
        mlflow_client = client(settings.mlflow)
        target = _info(mlflow_client, mlflow_client.get_model_version(model_name, str(version)))
        current = alias_version(mlflow_client, model_name, names.ALIAS_CHAMPION)
        now = None if current is None else int(current.version)
        if replacing is not _ANY_CHAMPION and now != replacing and now != version:
            raise ChampionChanged(
                f"@champion moved to version {now} while the gate compared version {version} with {replacing}: "
                "not promoting on a comparison with a model that no longer serves"
            )
        replaced = None if current is None or int(current.version) == version else int(current.version)
        if replaced is not None:
            mlflow_client.set_model_version_tag(model_name, str(version), PREVIOUS_CHAMPION_TAG, str(replaced))
        mlflow_client.set_registered_model_alias(model_name, names.ALIAS_CHAMPION, str(version))
        mlflow_client.set_model_version_tag(model_name, str(version), PROMOTED_TAG, _audit(reason))
    previous = replaced if replaced is not None else _int_tag(target.tags, PREVIOUS_CHAMPION_TAG)
    event = ModelEvent(
        kind="promoted",
        model_name=model_name,
        version=version,
        alias=names.ALIAS_CHAMPION,
        run_id=target.run_id,
        previous_version=previous,
        metrics=finite_metrics(target.summary()),
        reason=reason,
    )
    publish(settings.kafka, event, topic)
    logger.info("promoted model=%s version=%d previous=%s", model_name, version, previous)
    return {"model_name": model_name, "version": version, "alias": names.ALIAS_CHAMPION, "previous_champion": previous}


def rollback(
    settings: Settings,
    *,
    model_name: str = names.MODEL_NAME,
    topic: str = names.TOPIC_MODEL_EVENTS,
    reason: str = "rollback",
) -> dict[str, Any]:
    """Point ``champion`` back at the version the current champion replaced, and publish the event."""
    from streamml.models.events import ModelEvent, finite_metrics, publish

    with mlflow_errors(f"roll back {model_name}"):
        mlflow_client = client(settings.mlflow)
        current = alias_version(mlflow_client, model_name, names.ALIAS_CHAMPION)
        if current is None:
            raise StreamMLError(f"{model_name} has no champion to roll back")
        previous = _int_tag(dict(current.tags or {}), PREVIOUS_CHAMPION_TAG)
        if previous is None:
            raise StreamMLError(f"{model_name} champion version {current.version} has no previous champion")
        target = _info(mlflow_client, mlflow_client.get_model_version(model_name, str(previous)))
        mlflow_client.set_registered_model_alias(model_name, names.ALIAS_CHAMPION, str(previous))
        mlflow_client.set_model_version_tag(model_name, str(current.version), "rolled_back", "true")
        mlflow_client.set_model_version_tag(model_name, str(previous), PROMOTED_TAG, _audit(reason))
    event = ModelEvent(
        kind="rolled_back",
        model_name=model_name,
        version=previous,
        alias=names.ALIAS_CHAMPION,
        run_id=target.run_id,
        previous_version=int(current.version),
        metrics=finite_metrics(target.summary()),
        reason=f"{reason}, from version {current.version}",
    )
    publish(settings.kafka, event, topic)
    logger.info("rolled back model=%s from version=%s to version=%d", model_name, current.version, previous)
    return {
        "model_name": model_name,
        "version": previous,
        "alias": names.ALIAS_CHAMPION,
        "rolled_back_from": int(current.version),
    }


def run_id_of(settings: Settings, model_name: str, version: int) -> str:
    run_id = client(settings.mlflow).get_model_version(model_name, str(version)).run_id
    if not run_id:
        raise StreamMLError(f"{model_name} version {version} has no run")
    return str(run_id)


def _int_tag(tags: dict[str, str], key: str) -> int | None:
    value = tags.get(key)
    return int(value) if value is not None and value.isdigit() else None
