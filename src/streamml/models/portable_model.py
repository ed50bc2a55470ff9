"""The registered model's code: an MLflow "models from code" pyfunc of a fitted scikit-learn "like" classifier.

MLflow copies this file into the logged model and executes it when the model is loaded, so it is standalone on
purpose: it imports only the standard library, numpy, pandas, joblib and mlflow, never ``streamml``. A model logged
with it loads in any environment built from the model's own ``requirements.txt``, without the platform installed.
``streamml`` never imports this module (executing it calls :func:`mlflow.models.set_model`); it passes its path to
``mlflow.pyfunc.log_model`` (see :func:`streamml.models.pyfunc.portable_model`).

The model's artifacts (keys of ``artifacts=``): ``estimator`` (the fitted estimator, joblib), ``feature_names``
(a JSON list of the columns it was fitted on, in order) and, optionally, ``reference_profile`` (the JSON reference
profile of its training data, kept as text in :attr:`PortableLikeModel.profile_json`).

``predict`` takes a DataFrame with the feature columns (any order; extra columns are ignored) or a 2-D array of
exactly those columns in the model's order, and returns P(like) (label 1) as a 1-D float64 array. Through
``mlflow.pyfunc`` the model's column-based signature asks for the DataFrame.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

LIKE = 1


class PortableLikeModel(PythonModel):
    """P(like) of a fitted binary classifier, on the feature columns it was fitted on."""

    def __init__(self) -> None:
        self.estimator: Any = None
        self.feature_names: tuple[str, ...] = ()
        self.profile_json: str | None = None
        self._like = 0

    def load_context(self, context: Any) -> None:
        """Read the estimator, its columns and the reference profile (when logged) from the model's artifacts."""
        artifacts = context.artifacts
        self.estimator = joblib.load(artifacts["estimator"])
        self.feature_names = tuple(json.loads(Path(artifacts["feature_names"]).read_text(encoding="utf-8")))
        profile = artifacts.get("reference_profile")
        self.profile_json = Path(profile).read_text(encoding="utf-8") if profile else None
        classes = list(getattr(self.estimator, "classes_", []))
        if LIKE not in classes:
            raise ValueError(f"the estimator was not trained on the like class (classes: {classes})")
        self._like = classes.index(LIKE)

    # MLflow reads the hint of model_input: pd.DataFrame opts out of its type-hint validation (the signature
    # validates instead). A 2-D array of the columns in order is accepted too.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:  # noqa: ARG002 - pyfunc's signature
        """P(like) of each row of a frame with the feature columns, or of a (n, n_features) matrix in their order."""
        if isinstance(model_input, pd.DataFrame):
            missing = [name for name in self.feature_names if name not in model_input.columns]
            if missing:
                raise ValueError(f"missing feature column(s): {', '.join(missing)}")
            model_input = model_input[list(self.feature_names)].to_numpy(dtype=np.float64)
        matrix = np.atleast_2d(np.asarray(model_input, dtype=np.float64))
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise ValueError(f"expected a feature matrix of shape (n, {len(self.feature_names)}), got {matrix.shape}")
        return np.asarray(self.estimator.predict_proba(matrix)[:, self._like], dtype=np.float64)


mlflow.models.set_model(PortableLikeModel())
