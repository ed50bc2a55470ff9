"""The logged model: an MLflow pyfunc around a scikit-learn classifier, and the scorer's fast path.

``predict`` takes a float64 matrix of shape (n, :data:`~streamml.features.spec.N_FEATURES`) in
:data:`~streamml.features.spec.FEATURE_NAMES` order and returns the probability of "like". The wrapper is pickled
by reference (cloudpickle), so loading the model needs the ``streamml`` package installed, as every scorer has.
:func:`load_scorer` skips pyfunc's input handling and returns the estimator's ``predict_proba[:, like]`` directly:
no pandas and no schema enforcement on the hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc.model import PythonModel

from streamml.errors import ModelUnavailableError
from streamml.features.spec import AGGREGATE_FEATURES, FEATURE_NAMES, N_FEATURES

logger = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray], np.ndarray]
"""Feature matrix (n, N_FEATURES) -> probabilities of "like" (n,)."""


def like_column(estimator: Any) -> int:
    """Index of the "like" class (label 1) in ``estimator.predict_proba``'s columns."""
    classes = list(getattr(estimator, "classes_", []))
    if 1 not in classes:
        raise ModelUnavailableError(f"estimator was not trained on the like class (classes: {classes})")
    return classes.index(1)


def as_matrix(model_input: Any) -> np.ndarray:
    """A float64 (n, N_FEATURES) matrix from a numpy array, nested lists or a frame with the feature columns."""
    if hasattr(model_input, "columns") and set(FEATURE_NAMES) <= {str(column) for column in model_input.columns}:
        model_input = model_input[list(FEATURE_NAMES)]
    matrix = np.asarray(model_input, dtype=np.float64)
    if matrix.ndim == 1 and matrix.size == N_FEATURES:
        matrix = matrix.reshape(1, N_FEATURES)
    if matrix.ndim != 2 or matrix.shape[1] != N_FEATURES:
        raise ValueError(f"expected a feature matrix of shape (n, {N_FEATURES}), got {matrix.shape}")
    return matrix


def make_scorer(estimator: Any, feature_names: Sequence[str] = FEATURE_NAMES) -> Scorer:
    """The fast path: ``predict_proba(features[:, the model's columns])[:, like]`` with a shape check and nothing
    else. ``feature_names`` are the columns the estimator was fitted on, a subset of today's
    :data:`~streamml.features.spec.FEATURE_NAMES` (an older model scores today's matrix on its own columns)."""
    column = like_column(estimator)
    unknown = [name for name in feature_names if name not in FEATURE_NAMES]
    if unknown:
        raise ModelUnavailableError(f"the model uses feature(s) this feature definition lacks: {', '.join(unknown)}")
    own = tuple(feature_names) == FEATURE_NAMES
    columns = np.array([FEATURE_NAMES.index(name) for name in feature_names], dtype=np.intp)
    predict_proba = estimator.predict_proba

    def score(features: np.ndarray) -> np.ndarray:
        if features.ndim != 2 or features.shape[1] != N_FEATURES:
            raise ValueError(f"expected a feature matrix of shape (n, {N_FEATURES}), got {features.shape}")
        return np.asarray(predict_proba(features if own else features[:, columns])[:, column], dtype=np.float64)

    return score


class LikeModel(PythonModel):
    """MLflow pyfunc wrapper of a fitted binary classifier of "like" and the feature columns it was fitted on."""

    def __init__(self, estimator: Any, feature_names: Sequence[str] = FEATURE_NAMES) -> None:
        self.estimator = estimator
        self.feature_names = tuple(feature_names)
        like_column(estimator)  # refuse an estimator that cannot score likes before it is logged

    @property
    def columns(self) -> tuple[str, ...]:
        """The model's feature columns; a model pickled before they were recorded used the 33 aggregates."""
        return tuple(self.__dict__.get("feature_names", AGGREGATE_FEATURES))

    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:  # noqa: ARG002 - pyfunc's signature
        """Probabilities of "like" for a (n, N_FEATURES) float64 matrix."""
        return make_scorer(self.estimator, self.columns)(as_matrix(model_input))


def load_scorer(model_uri: str, tracking_uri: str | None = None) -> Scorer:
    """Load a logged :class:`LikeModel` (``models:/name@champion``, ``runs:/...``, a path) and return its fast
    path. ``tracking_uri`` points MLflow at the server first; raises :class:`ModelUnavailableError`."""
    from mlflow.exceptions import MlflowException

    if tracking_uri is not None:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        loaded = mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        raise ModelUnavailableError(f"cannot load model {model_uri}: {exc}") from exc
    python_model = loaded.unwrap_python_model()
    if not isinstance(python_model, LikeModel):
        raise ModelUnavailableError(f"{model_uri} is a {type(python_model).__name__}, not a streamml LikeModel")
    logger.info("loaded scorer model_uri=%s estimator=%s", model_uri, type(python_model.estimator).__name__)
    return make_scorer(python_model.estimator, python_model.columns)
