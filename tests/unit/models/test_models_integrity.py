"""Model integrity on a local MLflow registry (SQLite and local artifacts): only versions whose files carry the
platform's signature load; everything else is refused before it is unpickled."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from streamml.features.spec import N_FEATURES
from streamml.models import integrity
from streamml.models.integrity import ModelIntegrityError, artifact_digest, load_verified, sign_version
from streamml.models.pyfunc import portable_model

KEY = "unit-signing-key"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A local registry (created once: its migrations take seconds) and a small estimator."""
    tmp = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        patch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.create_experiment("unit", artifact_location=(tmp / "artifacts").as_uri())
        rng = np.random.default_rng(0)
        features = rng.normal(size=(200, N_FEATURES))
        estimator = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
        mlflow.set_tracking_uri(uri)
        yield {"uri": uri, "client": client, "experiment": experiment, "features": features, "estimator": estimator}
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type] # None: read the (restored) environment again


@pytest.fixture
def registry(store: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """A new, unsigned version of model ``like``: its own logged model, so a test may change its files."""
    with mlflow.start_run(experiment_id=store["experiment"]):
        files = portable_model(tmp_path / "files", store["estimator"])
        info = mlflow.pyfunc.log_model(name="model", pip_requirements=["scikit-learn"], **files)
    version = mlflow.register_model(info.model_uri, "like").version
    return {**store, "version": version, "model_id": info.model_id}


def test_a_signed_version_loads_and_scores_like_its_estimator(registry: dict[str, Any]) -> None:
    sign_version(registry["client"], registry["uri"], "like", registry["version"], KEY)
    loaded = load_verified(registry["uri"], "like", registry["version"], KEY)
    expected = registry["estimator"].predict_proba(registry["features"])[:, 1]
    np.testing.assert_allclose(loaded.scorer(registry["features"]), expected)


def test_an_unsigned_version_is_refused_before_it_is_unpickled(
    registry: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_unpickling(*_: Any, **__: Any) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("streamml.models.pyfunc.load_model", no_unpickling)
    with pytest.raises(ModelIntegrityError, match="carries no streamml.signature"):
        load_verified(registry["uri"], "like", registry["version"], KEY)


def test_another_key_or_a_forged_tag_is_refused(registry: dict[str, Any]) -> None:
    sign_version(registry["client"], registry["uri"], "like", registry["version"], "someone-elses-key")
    with pytest.raises(ModelIntegrityError, match="do not match its signature"):
        load_verified(registry["uri"], "like", registry["version"], KEY)
    registry["client"].set_model_version_tag("like", registry["version"], integrity.SIGNATURE_TAG, "0" * 64)
    with pytest.raises(ModelIntegrityError, match="do not match its signature"):
        load_verified(registry["uri"], "like", registry["version"], KEY)


def test_files_changed_after_signing_are_refused(registry: dict[str, Any]) -> None:
    sign_version(registry["client"], registry["uri"], "like", registry["version"], KEY)
    logged = registry["client"].get_logged_model(registry["model_id"]).artifact_location
    stored = next(Path(logged.removeprefix("file://")).rglob("estimator.joblib"))
    stored.write_bytes(pickle.dumps("a payload that runs when unpickled"))
    with pytest.raises(ModelIntegrityError, match="do not match its signature"):
        load_verified(registry["uri"], "like", registry["version"], KEY)


def test_no_key_configured_loads_nothing(registry: dict[str, Any]) -> None:
    sign_version(registry["client"], registry["uri"], "like", registry["version"], KEY)
    with pytest.raises(ModelIntegrityError, match="no signing key configured"):
        load_verified(registry["uri"], "like", registry["version"], None)


def test_the_digest_covers_every_file_its_name_and_content(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"one")
    (tmp_path / "MLmodel").write_text("flavors: {}")
    first = artifact_digest(tmp_path)
    (tmp_path / "registered_model_meta").write_text("model_name: like")  # MLflow's own, in every download
    assert artifact_digest(tmp_path) == first
    (tmp_path / "a" / "x.bin").write_bytes(b"two")
    changed = artifact_digest(tmp_path)
    assert changed != first
    (tmp_path / "a" / "x.bin").rename(tmp_path / "a" / "y.bin")
    assert artifact_digest(tmp_path) not in (first, changed)
    (tmp_path / "extra.py").write_text("import os")
    assert len({first, changed, artifact_digest(tmp_path)}) == 3
