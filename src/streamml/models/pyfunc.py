"""The logged model and the scorer's fast path.

New runs log the portable model (:func:`portable_model`): MLflow "models from code" with
:mod:`streamml.models.portable_model` as the code, the fitted estimator (joblib), its feature columns (JSON) and
its reference profile (:mod:`.profile`) as artifacts, and a column-based signature (one ``double`` per feature, in
the model's column order). It loads without ``streamml`` installed. Versions logged before it hold a
:class:`LikeModel`, pickled by reference (cloudpickle), which needs ``streamml`` to load; both load here.

:func:`load_model` and :func:`load_scorer` skip pyfunc's input handling and return the estimator's
``predict_proba[:, like]`` on the model's columns of a float64 matrix of shape
(n, :data:`~streamml.features.spec.N_FEATURES`) in :data:`~streamml.features.spec.FEATURE_NAMES` order: no pandas
and no schema enforcement on the hot path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from mlflow.pyfunc.model import PythonModel

from streamml.errors import ModelUnavailableError
from streamml.features.spec import AGGREGATE_FEATURES, FEATURE_NAMES, N_FEATURES
from streamml.models.forest import compile_forest
from streamml.models.profile import PROFILE_ARTIFACT, ReferenceProfile

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

logger = logging.getLogger(__name__)

PORTABLE_MODEL_CODE = Path(__file__).with_name("portable_model.py")
"""The code of the portable model; MLflow copies it into the model and executes it on load."""
ESTIMATOR_ARTIFACT = "estimator"
FEATURE_NAMES_ARTIFACT = "feature_names"
PROFILE_KEY = "reference_profile"
"""Keys of the portable model's ``artifacts``, as :mod:`.portable_model` reads them (it cannot import these)."""

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


def make_scorer(estimator: Any, feature_names: Sequence[str] = FEATURE_NAMES, compiled: bool = True) -> Scorer:
    """The fast path: ``predict_proba(features[:, the model's columns])[:, like]`` with a shape check and nothing
    else; for a HistGradientBoosting model the same scores from its compiled trees (:mod:`.forest`) unless
    ``compiled`` is false (a one-off call: compiling and checking costs more than it saves). ``feature_names`` are
    the columns the estimator was fitted on, a subset of today's :data:`~streamml.features.spec.FEATURE_NAMES` (an
    older model scores today's matrix on its own columns)."""
    column = like_column(estimator)
    unknown = [name for name in feature_names if name not in FEATURE_NAMES]
    if unknown:
        raise ModelUnavailableError(f"the model uses feature(s) this feature definition lacks: {', '.join(unknown)}")
    own = tuple(feature_names) == FEATURE_NAMES
    columns = np.array([FEATURE_NAMES.index(name) for name in feature_names], dtype=np.intp)
    forest = compile_forest(estimator) if compiled else None  # the same scores without a call per tree
    predict_like: Scorer
    if forest is not None:
        predict_like = forest.predict_like
    else:
        predict_proba = estimator.predict_proba
        threads = one_compute_thread()

        def predict_like(matrix: np.ndarray) -> np.ndarray:
            with threads():
                return np.asarray(predict_proba(matrix)[:, column], dtype=np.float64)

    def score(features: np.ndarray) -> np.ndarray:
        if features.ndim != 2 or features.shape[1] != N_FEATURES:
            raise ValueError(f"expected a feature matrix of shape (n, {N_FEATURES}), got {features.shape}")
        return predict_like(features if own else features[:, columns])

    return score


def one_compute_thread() -> Callable[[], AbstractContextManager[Any]]:
    """A context that limits OpenMP (and BLAS) to one thread while it is entered: a prediction of a few hundred rows
    spends most of its time starting OpenMP's threads and waiting at their barriers, the worse the busier the machine
    (measured here, a 300-tree HistGradientBoosting while a replay ran: one row 7.2 ms with one thread, 1,227 ms with
    two; 500 rows 18 ms vs 1,040 ms). Made from the libraries loaded now (call it once the model is loaded); entering
    it costs about 40 us, where ``threadpool_limits`` rescans the libraries (7.5 ms)."""
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    return lambda: controller.limit(limits=1)


class LikeModel(PythonModel):
    """MLflow pyfunc wrapper of a fitted binary classifier of "like" and the feature columns it was fitted on.

    The model of versions logged before the portable one (it is pickled by reference, so it needs ``streamml`` to
    load): kept so that they still load. New runs log :func:`portable_model`."""

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
        return make_scorer(self.estimator, self.columns, compiled=False)(as_matrix(model_input))


def model_signature(feature_names: Sequence[str] = FEATURE_NAMES) -> ModelSignature:
    """The portable model's signature: one ``double`` column per feature, in the model's order; a double out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in feature_names]), outputs=Schema([ColSpec("double")])
    )


def portable_model(
    directory: Path,
    estimator: Any,
    feature_names: Sequence[str] = FEATURE_NAMES,
    reference: ReferenceProfile | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``mlflow.pyfunc.log_model``/``save_model`` for the portable model of ``estimator``:
    ``python_model`` (the path of :mod:`.portable_model`), ``artifacts`` (written into ``directory``, which must
    outlive the MLflow call) and ``signature``."""
    import joblib

    like_column(estimator)  # refuse an estimator that cannot score likes before it is logged
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        ESTIMATOR_ARTIFACT: directory / "estimator.joblib",
        FEATURE_NAMES_ARTIFACT: directory / "feature_names.json",
    }
    joblib.dump(estimator, files[ESTIMATOR_ARTIFACT])
    files[FEATURE_NAMES_ARTIFACT].write_text(json.dumps(list(feature_names)), encoding="utf-8")
    if reference is not None:
        files[PROFILE_KEY] = directory / PROFILE_ARTIFACT
        files[PROFILE_KEY].write_text(reference.to_json(), encoding="utf-8")
    return {
        "python_model": str(PORTABLE_MODEL_CODE),
        "artifacts": {key: str(path) for key, path in files.items()},
        "signature": model_signature(feature_names),
    }


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model version: its fast path, the feature columns it was fitted on and its reference profile
    (None for a version logged without one)."""

    scorer: Scorer
    feature_names: tuple[str, ...]
    profile: ReferenceProfile | None


def _parts(python_model: Any, model_uri: str) -> tuple[Any, tuple[str, ...], str | None]:
    """(estimator, feature columns, profile JSON or None) of a legacy :class:`LikeModel` or a portable model."""
    if isinstance(python_model, LikeModel):
        return python_model.estimator, python_model.columns, None
    # The portable model's class lives in a module MLflow names at load time, so it is recognised by its fields.
    estimator = getattr(python_model, "estimator", None)
    feature_names = getattr(python_model, "feature_names", None)
    if estimator is None or not isinstance(feature_names, tuple):
        raise ModelUnavailableError(f"{model_uri} is a {type(python_model).__name__}, not a streamml like model")
    return estimator, feature_names, getattr(python_model, "profile_json", None)


def _profile(text: str | None, model_uri: str) -> ReferenceProfile | None:
    if text is None:
        return None
    try:
        return ReferenceProfile.from_json(text)
    except ValueError as exc:
        # The scorer does not need the profile; a drift monitor reading None reports "no reference".
        logger.warning("ignoring the reference profile of model_uri=%s: %s", model_uri, exc)
        return None


def load_model(model_uri: str, tracking_uri: str | None = None) -> LoadedModel:
    """Load a logged model (``models:/name@champion``, ``runs:/...``, a path), portable or a legacy
    :class:`LikeModel`, and return its fast path, columns and profile. ``tracking_uri`` points MLflow at the server
    first; raises :class:`ModelUnavailableError`."""
    from mlflow.exceptions import MlflowException

    if tracking_uri is not None:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        python_model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    except (MlflowException, OSError) as exc:
        raise ModelUnavailableError(f"cannot load model {model_uri}: {exc}") from exc
    estimator, feature_names, profile_json = _parts(python_model, model_uri)
    scorer = make_scorer(estimator, feature_names)
    logger.info(
        "loaded model model_uri=%s estimator=%s features=%d profile=%s",
        model_uri,
        type(estimator).__name__,
        len(feature_names),
        profile_json is not None,
    )
    return LoadedModel(scorer, feature_names, _profile(profile_json, model_uri))


def load_scorer(model_uri: str, tracking_uri: str | None = None) -> Scorer:
    """The fast path of :func:`load_model`; raises :class:`ModelUnavailableError`."""
    return load_model(model_uri, tracking_uri).scorer
