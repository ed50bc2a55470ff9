"""Training: a typed config, the four estimators, the data of a feature version, and one MLflow run per model.

Training rows are the history (every rating before the cutoff) with their point-in-time features; the stream is
only ever used for evaluation (see :mod:`.evaluate`); the data is read by :mod:`.dataset`. Every estimator has a
fixed ``random_state``.

KNN keeps a random subsample of ``knn.max_train_rows`` history rows (default 20,000 of about 80,000): prediction
cost grows with the training set, and the evaluation scores about 20,000 stream rows twice plus the permutation
importance, which would otherwise take minutes. The subsample is logged as ``train_rows``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from streamml import names
from streamml.config import Settings
from streamml.errors import StreamMLError
from streamml.features import spec
from streamml.models import evaluate as ev
from streamml.models import report
from streamml.models.dataset import Dataset, load_dataset

if TYPE_CHECKING:
    from streamml.models.profile import ReferenceProfile

logger = logging.getLogger(__name__)

ModelType = Literal["logreg", "hgb", "rf", "knn"]
MODEL_TYPES: tuple[ModelType, ...] = ("hgb", "logreg", "rf", "knn")
MODEL_ARTIFACT = "model"
PIP_PACKAGES = ("mlflow-skinny", "scikit-learn", "numpy", "scipy", "pandas", "joblib")
"""Pinned at their installed versions in the logged model's requirements: what :mod:`.portable_model` imports and
what unpickling the estimator needs (scikit-learn with the numpy and scipy it was fitted with)."""


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LogRegParams(_Params):
    C: float = Field(1.0, gt=0, description="Inverse L2 regularisation strength (features are standardised).")
    max_iter: int = Field(1000, ge=1, description="Maximum solver iterations.")


class HGBParams(_Params):
    """Defaults chosen on a validation split inside history (docs/models.md), never on the stream."""

    max_iter: int = Field(300, ge=1, description="Boosting iterations (all of them unless early_stopping).")
    learning_rate: float = Field(0.1, gt=0, le=1, description="Shrinkage of each tree's contribution.")
    max_depth: int | None = Field(None, ge=1, description="Maximum depth of each tree; None for unlimited.")
    max_leaf_nodes: int = Field(15, ge=2, description="Maximum leaves of each tree.")
    min_samples_leaf: int = Field(100, ge=1, description="Minimum training rows in a leaf.")
    l2_regularization: float = Field(1.0, ge=0, description="L2 penalty on leaf values.")
    early_stopping: bool = Field(False, description="Stop on a 10% validation holdout of the training rows.")


class RFParams(_Params):
    n_estimators: int = Field(200, ge=1, description="Number of trees.")
    max_depth: int | None = Field(12, ge=1, description="Maximum depth of each tree; None for unlimited.")


class KNNParams(_Params):
    n_neighbors: int = Field(50, ge=1, description="Neighbours voting on each prediction.")
    weights: Literal["uniform", "distance"] = Field("uniform", description="Vote weighting of the neighbours.")
    max_train_rows: int = Field(20_000, ge=1, description="Random subsample of the history kept as neighbours.")


class ModelConfig(_Params):
    """What to train and how to evaluate it; the section of ``model_type`` is used, the others are ignored."""

    model_type: ModelType = Field("hgb", description="Estimator family.")
    random_state: int = Field(42, description="Seed of every random choice (estimator, subsamples, permutations).")
    threshold: float = Field(
        names.DECISION_THRESHOLD, gt=0, lt=1, description="P(like) at or above which a row is predicted a like."
    )
    importance_rows: int = Field(2000, ge=0, description="Stream rows sampled for permutation importance; 0: skip.")
    importance_repeats: int = Field(3, ge=1, description="Permutations per feature.")
    fit_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="OpenMP threads of the fit. One: a retrain fits beside the serving platform, where two threads "
        "fitted 2.1x slower than one on the 2-core machine (python -m bench.fit_threads); quiet, two are 1.38x faster.",
    )
    logreg: LogRegParams = Field(default_factory=LogRegParams, description="Logistic regression (standardised).")
    hgb: HGBParams = Field(default_factory=HGBParams, description="HistGradientBoostingClassifier.")
    rf: RFParams = Field(default_factory=RFParams, description="RandomForestClassifier (n_jobs=2).")
    knn: KNNParams = Field(default_factory=KNNParams, description="KNeighborsClassifier (standardised).")

    def estimator_params(self) -> dict[str, Any]:
        section: _Params = getattr(self, self.model_type)
        return section.model_dump()

    def params(self) -> dict[str, Any]:
        """Flat parameters for MLflow: the shared fields and ``<model_type>.<name>`` for the chosen section."""
        shared = self.model_dump(include={"model_type", "random_state", "threshold", "importance_rows"})
        shared["importance_repeats"] = self.importance_repeats
        return shared | {f"{self.model_type}.{key}": value for key, value in self.estimator_params().items()}


def build_estimator(config: ModelConfig) -> Any:
    """An unfitted scikit-learn classifier for ``config``."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    seed = config.random_state
    if config.model_type == "logreg":
        p = config.logreg
        classifier = LogisticRegression(C=p.C, max_iter=p.max_iter, random_state=seed)
        return Pipeline([("scale", StandardScaler()), ("classifier", classifier)])
    if config.model_type == "hgb":
        h = config.hgb
        return HistGradientBoostingClassifier(**h.model_dump(), random_state=seed)
    if config.model_type == "rf":
        r = config.rf
        return RandomForestClassifier(n_estimators=r.n_estimators, max_depth=r.max_depth, n_jobs=2, random_state=seed)
    k = config.knn
    classifier = KNeighborsClassifier(n_neighbors=k.n_neighbors, weights=k.weights)
    return Pipeline([("scale", StandardScaler()), ("classifier", classifier)])


def training_rows(config: ModelConfig, n_rows: int) -> np.ndarray | None:
    """Indices of the history rows an estimator trains on, or None for all of them (only KNN subsamples)."""
    if config.model_type != "knn" or n_rows <= config.knn.max_train_rows:
        return None
    rng = np.random.default_rng(config.random_state)
    return np.sort(rng.choice(n_rows, size=config.knn.max_train_rows, replace=False))


def fit(config: ModelConfig, features: np.ndarray, labels: np.ndarray) -> Any:
    """Fit the estimator of ``config`` on ``features``/``labels`` (subsampled for KNN)."""
    rows = training_rows(config, len(labels))
    if rows is not None:
        features, labels = features[rows], labels[rows]
    if np.unique(labels).size < 2:
        raise StreamMLError("training labels hold a single class; cannot train a like classifier")
    from threadpoolctl import ThreadpoolController

    estimator = build_estimator(config)
    with ThreadpoolController().limit(limits=config.fit_threads, user_api="openmp"):
        estimator.fit(features, labels)
    logger.info("fitted model_type=%s rows=%d", config.model_type, len(labels))
    return estimator


# Training runs.


def train_and_evaluate(dataset: Dataset, config: ModelConfig) -> tuple[Any, ev.Evaluation]:
    """Fit on the history, evaluate on the stream in both modes, and compute permutation importance."""
    from streamml.models.pyfunc import make_scorer, one_compute_thread

    estimator = fit(config, dataset.train_features, dataset.train_labels)
    scorer = make_scorer(estimator)  # predicts on one thread (see one_compute_thread)
    evaluation = ev.evaluate(scorer, dataset.stream, config.threshold)
    if dataset.lagged_stream is not None:
        evaluation.freshness = ev.freshness_curve(scorer, dataset.stream.labels, dataset.lagged_stream)
    if config.importance_rows > 0:
        with one_compute_thread()():  # thousands of small predictions
            evaluation.importance = ev.permutation_importances(
                estimator,
                dataset.stream.features[ev.STREAMING],
                dataset.stream.labels,
                rows=config.importance_rows,
                repeats=config.importance_repeats,
                random_state=config.random_state,
            )
        evaluation.importance_meta = {
            "mode": ev.STREAMING,
            "scoring": "roc_auc",
            "rows": min(config.importance_rows, len(dataset.stream.labels)),
            "repeats": config.importance_repeats,
        }
    return estimator, evaluation


def git_commit() -> str:
    """``git rev-parse HEAD`` of the source tree this package runs from, or ``"unknown"``."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            [git, "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def pip_requirements() -> list[str]:
    """The logged model's requirements, pinned at the installed versions."""
    return [f"{package}=={importlib.metadata.version(package)}" for package in PIP_PACKAGES]


def reference_profile(dataset: Dataset, estimator: Any) -> ReferenceProfile:
    """The reference profile of what the model serves when nothing changes: the streaming evaluation set (the
    stream period's point-in-time features), the model's scores on it and its labels. Not the training rows: the
    stream comes later, and on MovieLens 22 to 26 of the 65 features of an undrifted 5,000-request window are past
    PSI 0.25 against the training rows (docs/models.md, "Drift monitoring")."""
    from streamml.models import profile
    from streamml.models.pyfunc import make_scorer

    features = dataset.stream.features[ev.STREAMING]
    return profile.build(features, spec.FEATURE_NAMES, make_scorer(estimator)(features), dataset.stream.labels)


def log_run(
    tracking_uri: str,
    experiment: str,
    config: ModelConfig,
    dataset: Dataset,
    estimator: Any,
    evaluation: ev.Evaluation,
) -> tuple[str, str]:
    """One MLflow run: params, metrics, tags, artifacts, the reference profile and the portable model; returns
    (run id, model URI)."""
    import mlflow
    import pandas as pd

    from streamml.models.profile import PROFILE_ARTIFACT
    from streamml.models.pyfunc import portable_model
    from streamml.stores.mlflow_client import mlflow_errors

    example = pd.DataFrame(dataset.stream.features[ev.STREAMING][:5], columns=list(spec.FEATURE_NAMES))
    reference = reference_profile(dataset, estimator)
    rows = training_rows(config, len(dataset.train_labels))
    commit = git_commit()
    params = config.params() | {
        "feature_version": dataset.feature_version,
        "train_rows": len(dataset.train_labels) if rows is None else len(rows),
        "stream_rows": len(dataset.stream.labels),
        "n_features": spec.N_FEATURES,
    }
    tags = {
        "feature_version": str(dataset.feature_version),
        "model_type": config.model_type,
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
    }
    with mlflow_errors(f"log the training run to {tracking_uri}"):
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment(experiment)
        with (
            mlflow.start_run(run_name=f"{config.model_type}-fv{dataset.feature_version}", tags=tags) as run,
            tempfile.TemporaryDirectory(prefix="streamml-eval-") as tmp,
            tempfile.TemporaryDirectory(prefix="streamml-model-") as model_files,
        ):
            mlflow.log_params(params)
            mlflow.log_metrics({key: value for key, value in evaluation.metrics().items() if np.isfinite(value)})
            report.write_artifacts(evaluation, Path(tmp), title=config.model_type)
            (Path(tmp) / PROFILE_ARTIFACT).write_text(reference.to_json(), encoding="utf-8")  # fetched by run
            mlflow.log_artifacts(tmp)
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                **portable_model(Path(model_files), estimator, spec.FEATURE_NAMES, reference),
                input_example=example,
                pip_requirements=pip_requirements(),
            )
    logger.info("logged run run_id=%s experiment=%s model_uri=%s", run.info.run_id, experiment, info.model_uri)
    return run.info.run_id, info.model_uri


def run_training(
    settings: Settings,
    feature_version: int,
    config: ModelConfig | None = None,
    *,
    model_name: str = names.MODEL_NAME,
    experiment: str | None = None,
) -> dict[str, Any]:
    """Train, evaluate, log one run and register the model as ``model_name``'s new challenger.

    Returns ``{"run_id", "model_name", "version", "feature_version", "model_type", "metrics"}`` where metrics are the
    model's AUC and log loss in both modes and the user-mean baseline's streaming AUC.
    """
    from streamml.models import registry

    config = config or ModelConfig()
    dataset = load_dataset(settings, feature_version)
    estimator, evaluation = train_and_evaluate(dataset, config)
    run_id, model_uri = log_run(
        settings.mlflow.tracking_uri,
        experiment or settings.mlflow.experiment,
        config,
        dataset,
        estimator,
        evaluation,
    )
    version = registry.register(settings, run_id, model_uri, model_name, feature_version, config.model_type)
    metrics = evaluation.metrics()
    return {
        "run_id": run_id,
        "model_name": model_name,
        "version": version,
        "feature_version": feature_version,
        "model_type": config.model_type,
        "metrics": {key: metrics[key] for key in names.SUMMARY_METRICS if key in metrics},
    }


def compare(
    settings: Settings,
    feature_version: int,
    model_types: list[str] | tuple[str, ...] = MODEL_TYPES,
    *,
    experiment: str | None = None,
) -> list[dict[str, Any]]:
    """Every model type with its default config and every baseline, both modes: rows for
    :func:`~streamml.models.report.markdown_table`. Nothing is registered; runs are logged to ``experiment``
    only when it is given (permutation importance is computed only then)."""
    dataset = load_dataset(settings, feature_version)
    rows: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []
    for model_type in model_types:
        config = ModelConfig.model_validate(
            {"model_type": model_type, "importance_rows": ModelConfig().importance_rows if experiment else 0}
        )
        estimator, evaluation = train_and_evaluate(dataset, config)
        model_rows = report.table_rows(evaluation.table, model_type)
        rows.append(model_rows[0])
        baselines = model_rows[1:]
        if experiment:
            log_run(settings.mlflow.tracking_uri, experiment, config, dataset, estimator, evaluation)
    return rows + baselines
