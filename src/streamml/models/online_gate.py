"""The online gate of ``movielens_retrain``: the challenger against the champion on the same live requests.

The scorer shadow-scores ``@challenger``; the metrics aggregator joins each shadow score with its request's feedback
and its champion score and publishes both models' AUC over the same window (``metrics:latest``, ``shadow``). With
enough of those requests, and enough of each class among them, :func:`promote_on_evidence` applies the registry's
rule (:func:`~streamml.models.registry.decide`) to the online AUCs; without them in time, the offline gate decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamml import names
from streamml.config import Settings
from streamml.models.registry import (
    DEFAULT_MARGIN,
    champion_version,
    decide,
    promote_as_decided,
    promote_if_better,
    run_id_of,
)
from streamml.stores.mlflow_client import client, mlflow_errors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowEvidence:
    """The challenger and the champion on the same joined live requests (the aggregator's ``shadow`` snapshot)."""

    champion_version: int
    challenger_version: int
    paired: int
    champion_auc: float | None
    challenger_auc: float | None
    likes: int = 0  # in the window of ``window`` pairs the AUCs are computed over
    window: int = 0

    def smaller_class(self) -> int:
        """Likes or non-likes in the window, whichever is fewer: an AUC over ten likes says nothing."""
        return min(self.likes, self.window - self.likes)

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any] | None) -> ShadowEvidence | None:
        shadow = (snapshot or {}).get("shadow")
        if not shadow:
            return None
        try:
            return cls(
                champion_version=int(shadow["champion_version"]),
                challenger_version=int(shadow["challenger_version"]),
                paired=int(shadow["paired_total"]),
                champion_auc=shadow.get("champion_auc"),
                challenger_auc=shadow.get("challenger_auc"),
                likes=int(shadow.get("likes", 0)),
                window=int(shadow.get("window", 0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def live_evidence(settings: Settings) -> ShadowEvidence | None:
    """The shadow evidence in the latest published metrics snapshot (Redis ``metrics:latest``), if any."""
    import json

    from streamml.stores.metrics import RedisMetricsStore
    from streamml.stores.redis_client import redis_client

    raw = RedisMetricsStore(redis_client(settings.redis)).latest()
    return ShadowEvidence.from_snapshot(json.loads(raw)) if raw else None


def promote_on_evidence(
    settings: Settings,
    version: int,
    margin: float = DEFAULT_MARGIN,
    *,
    min_pairs: int,
    wait_seconds: float,
    min_class: int = 0,
    poll_seconds: float = 5.0,
    evidence: Callable[[], ShadowEvidence | None] | None = None,
    model_name: str = names.MODEL_NAME,
    topic: str = names.TOPIC_MODEL_EVENTS,
) -> dict[str, Any]:
    """Wait up to ``wait_seconds`` for ``min_pairs`` shadow-scored requests of ``version`` against the current
    champion joined with their feedback, with at least ``min_class`` likes and as many non-likes among them; then
    promote when its online AUC beats the champion's by ``margin``.
    Without that evidence in time, :func:`promote_if_better` (offline) decides. The result says which
    (``evidence``: ``online`` or ``offline``) and, online, the numbers; both are recorded on the run."""
    read = evidence or (lambda: live_evidence(settings))
    deadline = time.monotonic() + wait_seconds
    found: ShadowEvidence | None = None
    while True:
        current = champion_version(settings, model_name)
        candidate = read()
        if (
            candidate is not None
            and candidate.challenger_version == version
            and candidate.champion_version == current
            and candidate.paired >= min_pairs
            and candidate.smaller_class() >= min_class
            and candidate.champion_auc is not None
            and candidate.challenger_auc is not None
        ):
            found = candidate
            break
        if current == version or time.monotonic() >= deadline:
            break
        time.sleep(poll_seconds)
    if found is None:
        logger.info(
            "no shadow evidence of %d requests with %d of each class for version=%d: the offline gate decides",
            min_pairs,
            min_class,
            version,
        )
        result = promote_if_better(settings, version, margin, model_name=model_name, topic=topic)
        with mlflow_errors(f"record the gate's evidence for version {version}"):
            client(settings.mlflow).set_tag(run_id_of(settings, model_name, version), "gate.evidence", "offline")
        return {**result, "evidence": "offline"}
    decision = decide(float(found.challenger_auc or 0.0), found.champion_auc, margin)
    reason = f"online, {found.paired} shadowed requests ({found.likes} likes of {found.window}): {decision.reason}"
    with mlflow_errors(f"log the online gate decision of version {version}"):
        mlflow_client = client(settings.mlflow)
        run_id = run_id_of(settings, model_name, version)
        mlflow_client.log_metric(run_id, "gate_online_challenger_auc", float(found.challenger_auc or 0.0))
        mlflow_client.log_metric(run_id, "gate_online_champion_auc", float(found.champion_auc or 0.0))
        mlflow_client.log_metric(run_id, "gate_online_pairs", float(found.paired))
        mlflow_client.log_metric(run_id, "gate_margin", margin)
        mlflow_client.log_metric(run_id, "gate_promoted", float(decision.promote))
        for key, value in {
            "gate.evidence": "online",
            "gate.decision": "promote" if decision.promote else "reject",
            "gate.reason": reason,
            "gate.champion_version": str(found.champion_version),
        }.items():
            mlflow_client.set_tag(run_id, key, value)
        mlflow_client.set_model_version_tag(
            model_name, str(version), "gate_decision", "promote" if decision.promote else "reject"
        )
    logger.info("online gate model=%s version=%d promote=%s reason=%s", model_name, version, decision.promote, reason)
    moved = (
        promote_as_decided(settings, version, found.champion_version, reason, model_name, topic)
        if decision.promote
        else {}
    )
    return {
        "model_name": model_name,
        "version": version,
        "champion_version": found.champion_version,
        **decision.as_dict(),
        "reason": reason,
        "evidence": "online",
        "paired": found.paired,
    } | moved
