"""Config, estimators and a whole train + evaluate + artifacts pass on small synthetic data (no MLflow)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from streamml.data.movielens import synthesize
from streamml.features import spec
from streamml.models import evaluate as ev
from streamml.models import profile, report
from streamml.models.dataset import Dataset, dataset_from_ratings
from streamml.models.train import (
    HGBParams,
    KNNParams,
    ModelConfig,
    build_estimator,
    fit,
    log_run,
    pip_requirements,
    reference_profile,
    train_and_evaluate,
    training_rows,
)


def test_default_config_is_hgb_with_fixed_seed_and_flat_params() -> None:
    config = ModelConfig()
    assert config.model_type == "hgb"
    assert config.params() == {
        "model_type": "hgb",
        "random_state": 42,
        "threshold": 0.5,
        "importance_rows": 2000,
        "importance_repeats": 3,
        "hgb.max_iter": 300,
        "hgb.learning_rate": 0.1,
        "hgb.max_depth": None,
        "hgb.max_leaf_nodes": 15,
        "hgb.min_samples_leaf": 100,
        "hgb.l2_regularization": 1.0,
        "hgb.early_stopping": False,
    }
    with pytest.raises(ValidationError):
        ModelConfig(model_type="svm")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ModelConfig.model_validate({"knn": {"n_neighbours": 3}})  # typo: extra fields are refused


@pytest.mark.parametrize(
    ("model_type", "kind"),
    [
        ("hgb", HistGradientBoostingClassifier),
        ("rf", RandomForestClassifier),
        ("logreg", LogisticRegression),
        ("knn", KNeighborsClassifier),
    ],
)
def test_each_model_type_builds_its_estimator(model_type: str, kind: type) -> None:
    estimator = build_estimator(ModelConfig.model_validate({"model_type": model_type}))
    classifier = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    assert isinstance(classifier, kind)
    if model_type in ("logreg", "knn"):
        assert type(estimator.steps[0][1]).__name__ == "StandardScaler"
    if model_type == "rf":
        assert classifier.n_jobs == 2
    if model_type != "knn":
        assert classifier.random_state == 42


def test_only_knn_subsamples_and_deterministically() -> None:
    assert training_rows(ModelConfig(), 50_000) is None
    knn = ModelConfig(model_type="knn", knn=KNNParams(max_train_rows=100))
    rows = training_rows(knn, 1000)
    assert rows is not None and len(rows) == 100 == len(set(rows.tolist()))
    assert (np.diff(rows) > 0).all()
    np.testing.assert_array_equal(rows, training_rows(knn, 1000))
    assert training_rows(knn, 80) is None


def test_pip_requirements_pin_the_installed_versions() -> None:
    pins = dict(line.split("==") for line in pip_requirements())
    assert set(pins) == {"mlflow-skinny", "scikit-learn", "numpy", "scipy", "pandas", "joblib"}
    assert all(version[0].isdigit() for version in pins.values())


@pytest.fixture(scope="module")
def small() -> Dataset:
    ratings, movies = synthesize(n_ratings=4000, n_users=80, n_movies=300, seed=5)
    return dataset_from_ratings(ratings, movies)


def test_train_evaluate_and_write_every_artifact(small: Dataset, tmp_path: Path) -> None:
    config = ModelConfig(hgb=HGBParams(max_iter=30), importance_rows=300, importance_repeats=2)
    estimator, evaluation = train_and_evaluate(small, config)
    metrics = evaluation.metrics()
    assert 0.5 < metrics["streaming_auc"] <= 1.0
    assert {"frozen_auc", "streaming_baseline_user_auc", "frozen_baseline_global_brier"} <= set(metrics)
    means = [float(item["mean"]) for item in evaluation.importance]
    assert means == sorted(means, reverse=True) and len(means) == spec.N_FEATURES

    written = {path.name for path in report.write_artifacts(evaluation, tmp_path, "hgb")}
    assert written == {
        "confusion_matrix.json",
        "confusion_matrix.png",
        "classification_report.json",
        "classification_report.txt",
        "roc_curve.png",
        "calibration.png",
        "evaluation.json",
        "evaluation.md",
        "permutation_importance.json",
        "permutation_importance.png",
    }
    for name in written:
        if name.endswith(".png"):
            assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    confusion = json.loads((tmp_path / "confusion_matrix.json").read_text())
    for mode in ev.MODES:
        assert sum(map(sum, confusion["matrices"][mode])) == len(small.stream.labels)
    positives = int(small.stream.labels.sum())
    assert sum(confusion["matrices"][ev.STREAMING][1]) == positives  # row 1 holds the true likes
    classification = json.loads((tmp_path / "classification_report.json").read_text())
    assert classification[ev.STREAMING]["accuracy"] == pytest.approx(metrics["streaming_accuracy"])
    importance = json.loads((tmp_path / "permutation_importance.json").read_text())
    assert importance["rows"] == 300 and importance["scoring"] == "roc_auc"
    assert "| hgb |" in (tmp_path / "evaluation.md").read_text()
    np.testing.assert_allclose(
        evaluation.predictions[ev.STREAMING], estimator.predict_proba(small.stream.features[ev.STREAMING])[:, 1]
    )


def test_training_is_reproducible(small: Dataset) -> None:
    config = ModelConfig(hgb=HGBParams(max_iter=20), importance_rows=0)
    first = train_and_evaluate(small, config)[1].metrics()
    second = train_and_evaluate(small, config)[1].metrics()
    assert first == second


def test_the_reference_profile_is_of_the_streaming_evaluation_set(small: Dataset) -> None:
    config = ModelConfig(model_type="logreg")
    estimator = fit(config, small.train_features, small.train_labels)
    reference = reference_profile(small, estimator)
    stream = small.stream.features[ev.STREAMING]
    assert reference.rows == len(small.stream.labels)
    assert list(reference.features) == list(spec.FEATURE_NAMES)
    assert reference.like_rate == pytest.approx(float(small.stream.labels.mean()))
    scores = estimator.predict_proba(stream)[:, 1]
    np.testing.assert_allclose(reference.score.shares, reference.score.shares_of(scores))
    assert reference.score.psi(scores) == pytest.approx(0.0, abs=1e-12)
    column = spec.FEATURE_NAMES.index("movie_count")
    assert reference.features["movie_count"].psi(stream[:, column]) == pytest.approx(0.0, abs=1e-12)


@pytest.fixture
def local_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A tracking store in a temp dir (SQLite and local artifacts; no server). log_run sets MLflow's global tracking
    URI and active experiment (and their environment variables); they are put back afterwards."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    mlflow.MlflowClient(tracking_uri=uri).create_experiment("unit", artifact_location=(tmp_path / "artifacts").as_uri())
    yield uri
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type] # None: read the (restored) environment again


def test_a_logged_run_holds_the_portable_model_and_its_profile(
    small: Dataset, local_tracking: str, tmp_path: Path
) -> None:
    from streamml.models.pyfunc import load_model

    config = ModelConfig(model_type="logreg", importance_rows=0)
    estimator, evaluation = train_and_evaluate(small, config)
    run_id, model_uri = log_run(local_tracking, "unit", config, small, estimator, evaluation)

    loaded = load_model(model_uri, local_tracking)
    assert loaded.feature_names == spec.FEATURE_NAMES
    assert loaded.profile == reference_profile(small, estimator)
    features = small.stream.features[ev.STREAMING]
    np.testing.assert_array_equal(loaded.scorer(features), estimator.predict_proba(features)[:, 1])
    model = mlflow.pyfunc.load_model(model_uri)
    assert model.metadata.signature.inputs.input_names() == list(spec.FEATURE_NAMES)
    assert type(model.unwrap_python_model()).__name__ == "PortableLikeModel"
    by_run = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path=profile.PROFILE_ARTIFACT,
        dst_path=str(tmp_path / "dl"),
        tracking_uri=local_tracking,
    )
    assert profile.ReferenceProfile.from_json(Path(by_run).read_text()) == loaded.profile
