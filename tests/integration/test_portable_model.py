"""The portable model loads and scores in a clean venv built from nothing but its own requirements.txt.

The venv is made with uv from PyPI (``uv venv`` + ``uv pip install -r requirements.txt``) under the repository's
gitignored ``.cache/portable-venv/<hash of requirements.txt and Python version>``, with uv's cache in ``.cache/uv``,
so a rerun reuses it. A script run in it asserts that ``streamml`` is not importable, loads the model with
``mlflow.pyfunc.load_model``, scores feature rows read from JSON and reads the reference profile; the scores must
equal the platform's fast path (:func:`streamml.models.pyfunc.load_model`) in this process.

The first test saves the model to a directory (no server); the second loads ``models:/<name>@champion`` from the
running MLflow.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from streamml import names
from streamml.config import Settings
from streamml.data.movielens import synthesize
from streamml.features.spec import FEATURE_NAMES
from streamml.models import evaluate as ev
from streamml.models.dataset import dataset_from_ratings
from streamml.models.profile import ReferenceProfile
from streamml.models.pyfunc import load_model, portable_model
from streamml.models.train import HGBParams, ModelConfig, fit, pip_requirements, reference_profile

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CACHE = Path(__file__).resolve().parents[2] / ".cache"

SCRIPT = """
import importlib.util, json, sys
assert importlib.util.find_spec("streamml") is None, "streamml is importable in the clean venv"
import mlflow, numpy as np, pandas as pd
model_uri, rows_path, out_path = sys.argv[1:]
rows = json.loads(open(rows_path).read())
model = mlflow.pyfunc.load_model(model_uri)
scores = model.predict(pd.DataFrame(rows["data"], columns=rows["columns"]))
python_model = model.unwrap_python_model()
profile = json.loads(python_model.profile_json) if python_model.profile_json else None
with open(out_path, "w") as out:
    json.dump({"scores": np.asarray(scores, dtype=np.float64).tolist(), "shape": list(np.shape(scores)),
               "prefix": sys.prefix, "model": type(python_model).__name__,
               "profile_rows": profile and profile["rows"]}, out)
"""


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    """A small default-type (hgb) model on synthetic MovieLens features, its profile and stream rows to score."""
    ratings, movies = synthesize(n_ratings=4000, n_users=80, n_movies=300, seed=5)
    dataset = dataset_from_ratings(ratings, movies)
    config = ModelConfig(hgb=HGBParams(max_iter=50))
    estimator = fit(config, dataset.train_features, dataset.train_labels)
    return {
        "estimator": estimator,
        "reference": reference_profile(dataset, estimator),
        "rows": dataset.stream.features[ev.STREAMING][:300],
    }


def _uv() -> str:
    local = Path.home() / ".local" / "bin" / "uv"
    found = shutil.which("uv") or (str(local) if local.exists() else None)
    if found is None:
        pytest.fail("uv is missing: ./run.sh setup installs it (python3.11 -m pip install --user uv)")
    return found


def _clean_env(**extra: str) -> dict[str, str]:
    """The machine's environment (its certificates and proxies reach PyPI) without the test process's Python
    setup: no PYTHONPATH (which holds ``src``), no VIRTUAL_ENV, none of its MLflow settings."""
    dropped = ("PYTHON", "VIRTUAL_ENV", "CONDA", "MLFLOW_", "UV_")
    keep = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    return keep | {"UV_CACHE_DIR": str(CACHE / "uv"), "UV_PYTHON_DOWNLOADS": "never"} | extra


def clean_venv(requirements: Path) -> Path:
    """The python of a venv holding only ``requirements`` (built once per requirements and Python version)."""
    key = hashlib.sha256(requirements.read_bytes() + platform.python_version().encode()).hexdigest()[:16]
    venv = CACHE / "portable-venv" / key
    python = venv / "bin" / "python"
    done = venv / ".installed"
    if not done.exists():
        shutil.rmtree(venv, ignore_errors=True)  # a build that was interrupted
        uv, env = _uv(), _clean_env()
        # The interpreter that saved the model: the same Python version as its python_env.yaml.
        for command in (
            [uv, "venv", "--quiet", "--no-config", "--no-project", "--python", sys.executable, str(venv)],
            [uv, "pip", "install", "--quiet", "--no-config", "--python", str(python), "-r", str(requirements)],
        ):
            result = subprocess.run(command, env=env, cwd=CACHE, capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, f"{' '.join(command)}:\n{result.stderr}"
        done.write_text(requirements.read_text())
    return python


def scores_in_clean_venv(model_uri: str, requirements: Path, rows: np.ndarray, tmp_path: Path, **env: str) -> Any:
    CACHE.mkdir(exist_ok=True)
    python = clean_venv(requirements)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "score.py").write_text(SCRIPT)
    (tmp_path / "rows.json").write_text(json.dumps({"columns": list(FEATURE_NAMES), "data": rows.tolist()}))
    result = subprocess.run(
        [str(python), "score.py", model_uri, "rows.json", "out.json"],
        env=_clean_env(**env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    assert Path(out["prefix"]) == python.parent.parent  # it ran in the clean venv
    assert out["model"] == "PortableLikeModel" and out["shape"] == [len(rows)]
    return out


def test_the_saved_model_scores_in_a_clean_venv_like_the_fast_path(trained: dict[str, Any], tmp_path: Path) -> None:
    model = tmp_path / "model"
    reference: ReferenceProfile = trained["reference"]
    mlflow.pyfunc.save_model(
        str(model),
        **portable_model(tmp_path / "files", trained["estimator"], FEATURE_NAMES, reference),
        input_example=pd.DataFrame(trained["rows"][:5], columns=list(FEATURE_NAMES)),
        pip_requirements=pip_requirements(),
    )
    assert (model / "requirements.txt").read_text().split() == pip_requirements()

    out = scores_in_clean_venv(str(model), model / "requirements.txt", trained["rows"], tmp_path / "run")
    fast = load_model(str(model))
    expected = fast.scorer(trained["rows"])
    assert np.allclose(out["scores"], expected, rtol=0, atol=1e-12)
    assert out["profile_rows"] == reference.rows and fast.profile == reference
    assert 0.0 < float(np.std(expected))  # the rows are scored, not a constant


@pytest.mark.mlflow
@pytest.mark.minio
def test_the_champion_from_the_registry_scores_in_a_clean_venv(
    trained: dict[str, Any], settings: Settings, require: Callable[[str], None], uid: str, tmp_path: Path
) -> None:
    require("mlflow")
    require("minio")
    tracking = settings.mlflow.tracking_uri
    client = MlflowClient(tracking_uri=tracking)
    name = f"test-portable-{uid}"
    mlflow.set_tracking_uri(tracking)
    experiment = mlflow.set_experiment(name)
    try:
        with mlflow.start_run(experiment_id=experiment.experiment_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                **portable_model(tmp_path / "files", trained["estimator"], FEATURE_NAMES, trained["reference"]),
                input_example=pd.DataFrame(trained["rows"][:5], columns=list(FEATURE_NAMES)),
                pip_requirements=pip_requirements(),
            )
        version = mlflow.register_model(info.model_uri, name)
        client.set_registered_model_alias(name, names.ALIAS_CHAMPION, version.version)
        champion = f"models:/{name}@{names.ALIAS_CHAMPION}"
        requirements = Path(mlflow.pyfunc.get_model_dependencies(champion))

        out = scores_in_clean_venv(
            champion,
            requirements,
            trained["rows"],
            tmp_path / "run",
            MLFLOW_TRACKING_URI=tracking,
            **settings.mlflow.client_env(),  # the server signs every request in (basic-auth)
        )
        fast = load_model(champion, tracking)
        assert np.allclose(out["scores"], fast.scorer(trained["rows"]), rtol=0, atol=1e-12)
        assert fast.profile == trained["reference"] and out["profile_rows"] == trained["reference"].rows
    finally:
        if client.search_registered_models(f"name='{name}'"):
            client.delete_registered_model(name)
        client.delete_experiment(experiment.experiment_id)
