"""What the DAG tasks call: each step of ``movielens_training`` and ``batch_scoring``, one call with a small JSON-able
result.

The Airflow DAG and the CLI both call these; each is idempotent (a rerun overwrites the same snapshot/version).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from streamml import names
from streamml.config import Settings
from streamml.errors import ConfigError, DataValidationError
from streamml.paths import BUILD_FEATURES_SCRIPT, repo_root

logger = logging.getLogger(__name__)


@contextmanager
def fail_without_retry() -> Iterator[None]:
    """Around a DAG task's call: an error that retrying cannot fix (a missing or invalid data set, wrong settings, a
    bad run param) fails the task at once, with Airflow's ``AirflowFailException``; any other error is raised as is,
    so Airflow's retries handle infrastructure faults."""
    from pydantic import ValidationError

    try:
        yield
    except (ConfigError, DataValidationError, ValidationError) as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def ingest(settings: Settings, directory: Path | None = None) -> dict[str, Any]:
    """Validate MovieLens and upload it to MinIO as a complete raw snapshot."""
    from streamml.data.ingest import ingest as run

    return asdict(run(settings, directory))


def validate(settings: Settings, snapshot: str) -> dict[str, Any]:
    """Check the raw snapshot in MinIO is complete and intact."""
    from streamml.data.ingest import verify

    return asdict(verify(settings, snapshot))


def build_features(settings: Settings, snapshot: str, quantile: float = names.SPLIT_QUANTILE) -> dict[str, Any]:
    """Split and build features with spark-submit on the configured master; return the manifest."""
    from streamml.features.batch import allocate_version, read_manifest
    from streamml.spark_session import run_submit

    version = allocate_version(settings, snapshot, quantile)
    script = repo_root() / BUILD_FEATURES_SCRIPT
    run_submit(settings, script, "--snapshot", snapshot, "--version", str(version), "--quantile", str(quantile))
    return read_manifest(settings, version)


def materialize(settings: Settings, version: int) -> dict[str, Any]:
    """Load the version's online snapshot into Redis and switch ``feat:current`` to it."""
    from streamml.features.materialize import materialize as run

    return run(settings, version)


def train(settings: Settings, feature_version: int, model: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train, evaluate in both modes, log to MLflow and register the new version as challenger.

    ``model`` is a :class:`~streamml.models.train.ModelConfig` as a dict, e.g. ``{"model_type": "logreg",
    "logreg": {"C": 0.5}}``; empty means the defaults.
    """
    from streamml.models.train import ModelConfig, run_training

    return run_training(settings, feature_version, ModelConfig.model_validate(model or {}))


def promote(settings: Settings, version: int, margin: float | None = None) -> dict[str, Any]:
    """Make ``version`` champion if it beats the champion's streaming AUC by ``margin`` (or there is none)."""
    from streamml.models.registry import DEFAULT_MARGIN, promote_if_better

    return promote_if_better(settings, version, DEFAULT_MARGIN if margin is None else margin)


def retrain_snapshot(settings: Settings) -> dict[str, Any]:
    """History + the archived feedback as a new raw snapshot, and the split quantile that evaluates on the newest
    feedback; raises Airflow's skip when the archive holds too little to retrain on."""
    from streamml.models.retrain import NotEnoughFeedback, build_retrain_snapshot

    try:
        return build_retrain_snapshot(settings)
    except NotEnoughFeedback as exc:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(str(exc)) from exc


def promote_on_evidence(
    settings: Settings,
    version: int,
    margin: float | None = None,
    min_pairs: int | None = None,
    wait_seconds: float | None = None,
) -> dict[str, Any]:
    """The retrained version's gate: online shadow evidence first, the offline gate without it."""
    from streamml.models.online_gate import promote_on_evidence as run

    retrain = settings.retrain
    return run(
        settings,
        version,
        retrain.margin if margin is None else margin,
        min_pairs=retrain.min_shadow_pairs if min_pairs is None else min_pairs,
        wait_seconds=retrain.shadow_wait_seconds if wait_seconds is None else wait_seconds,
        min_class=retrain.min_shadow_class,
    )


def batch_score(settings: Settings, feature_version: int | None = None) -> dict[str, Any]:
    """Score the whole stream period with @champion (offline batch inference) into MinIO; return counts."""
    from streamml.models.batch_scoring import score_stream_period

    return score_stream_period(settings, feature_version)
