"""The logged pyfunc (the portable model, and the legacy LikeModel that older versions hold) and the scorer's fast
path, on tiny models trained in-process and saved to temp dirs (no server)."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from mlflow.types import DataType
from sklearn.linear_model import LogisticRegression

from streamml.errors import ModelUnavailableError
from streamml.features.spec import FEATURE_NAMES, N_FEATURES
from streamml.models import profile
from streamml.models.pyfunc import (
    PORTABLE_MODEL_CODE,
    LikeModel,
    as_matrix,
    load_model,
    load_scorer,
    make_scorer,
    portable_model,
)
from streamml.models.train import pip_requirements


@pytest.fixture(scope="module")
def estimator() -> LogisticRegression:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, N_FEATURES))
    labels = (features[:, 2] + 0.5 * rng.normal(size=300) > 0).astype(int)
    return LogisticRegression().fit(features, labels)


@pytest.fixture(scope="module")
def saved(estimator: LogisticRegression, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A legacy LikeModel saved the way versions before the portable model were logged (tensor signature)."""
    path = tmp_path_factory.mktemp("pyfunc") / "model"
    example = np.random.default_rng(1).normal(size=(3, N_FEATURES))
    mlflow.pyfunc.save_model(
        str(path),
        python_model=LikeModel(estimator),
        signature=infer_signature(example, estimator.predict_proba(example)[:, 1]),
        input_example=example,
        pip_requirements=["scikit-learn", "numpy"],
    )
    return path


def test_predict_on_numpy_returns_like_probabilities(estimator: LogisticRegression) -> None:
    features = np.random.default_rng(2).normal(size=(50, N_FEATURES))
    probabilities = LikeModel(estimator).predict(None, features)
    assert probabilities.shape == (50,) and probabilities.dtype == np.float64
    assert ((probabilities >= 0.0) & (probabilities <= 1.0)).all()
    np.testing.assert_allclose(probabilities, estimator.predict_proba(features)[:, 1])
    assert np.corrcoef(probabilities, features[:, 2])[0, 1] > 0.8  # the "like" column, not the other one


def test_saved_pyfunc_and_fast_scorer_agree(saved: Path, estimator: LogisticRegression) -> None:
    features = np.random.default_rng(3).normal(size=(20, N_FEATURES))
    through_pyfunc = np.asarray(mlflow.pyfunc.load_model(str(saved)).predict(features))
    scorer = load_scorer(str(saved))
    np.testing.assert_allclose(through_pyfunc, estimator.predict_proba(features)[:, 1])
    np.testing.assert_allclose(scorer(features), through_pyfunc)
    assert ((scorer(features) >= 0) & (scorer(features) <= 1)).all()


def test_scorer_refuses_a_wrong_shape(estimator: LogisticRegression) -> None:
    scorer = make_scorer(estimator)
    with pytest.raises(ValueError, match=f"\\(n, {N_FEATURES}\\)"):
        scorer(np.zeros((4, N_FEATURES - 1)))


def test_frame_input_is_reordered_by_feature_name() -> None:
    features = np.arange(2 * N_FEATURES, dtype=np.float64).reshape(2, N_FEATURES)
    shuffled = pd.DataFrame(features, columns=list(FEATURE_NAMES))[list(reversed(FEATURE_NAMES))]
    np.testing.assert_array_equal(as_matrix(shuffled), features)
    np.testing.assert_array_equal(as_matrix(features[0].tolist()), features[:1])


def test_a_model_that_never_saw_a_like_is_refused() -> None:
    one_class = LogisticRegression().fit(np.zeros((4, N_FEATURES)) + np.arange(4)[:, None], [0, 2, 0, 2])
    with pytest.raises(ModelUnavailableError, match="like class"):
        LikeModel(one_class)


def test_loading_nothing_is_model_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError):
        load_scorer(str(tmp_path / "missing"))


def test_a_model_fitted_on_some_columns_scores_the_full_matrix_on_its_own(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    columns = ("user_like_rate", "user_recent_like_r10", "movie_mean_shrunk")
    index = [FEATURE_NAMES.index(name) for name in columns]
    full = rng.normal(size=(200, N_FEATURES))
    labels = (full[:, index[1]] > 0).astype(int)
    narrow = LogisticRegression().fit(full[:, index], labels)
    path = tmp_path / "narrow"
    mlflow.pyfunc.save_model(str(path), python_model=LikeModel(narrow, columns), pip_requirements=["scikit-learn"])

    expected = narrow.predict_proba(full[:, index])[:, 1]
    np.testing.assert_array_equal(load_scorer(str(path))(full), expected)
    np.testing.assert_array_equal(LikeModel(narrow, columns).predict(None, full), expected)
    with pytest.raises(ModelUnavailableError, match="user_mood"):
        make_scorer(narrow, ("user_like_rate", "user_mood", "movie_mean_shrunk"))


def test_a_model_pickled_before_columns_were_recorded_uses_the_33_aggregates() -> None:
    from streamml.features.spec import AGGREGATE_FEATURES

    rng = np.random.default_rng(4)
    full = rng.normal(size=(100, N_FEATURES))
    aggregates = full[:, : len(AGGREGATE_FEATURES)]
    old = LogisticRegression().fit(aggregates, (aggregates[:, 2] > 0).astype(int))
    legacy = LikeModel.__new__(LikeModel)
    legacy.__dict__.update({"estimator": old})  # what unpickling an old LikeModel restores
    assert legacy.columns == AGGREGATE_FEATURES
    np.testing.assert_allclose(legacy.predict(None, full), old.predict_proba(aggregates)[:, 1], rtol=1e-12)


def test_a_legacy_model_loads_without_a_profile(saved: Path, estimator: LogisticRegression) -> None:
    loaded = load_model(str(saved))
    features = np.random.default_rng(5).normal(size=(10, N_FEATURES))
    assert loaded.feature_names == FEATURE_NAMES and loaded.profile is None
    np.testing.assert_array_equal(loaded.scorer(features), estimator.predict_proba(features)[:, 1])


# The portable model (models from code): what training logs today.


@pytest.fixture(scope="module")
def reference(estimator: LogisticRegression) -> profile.ReferenceProfile:
    features = np.random.default_rng(6).normal(size=(400, N_FEATURES))
    return profile.build(features, FEATURE_NAMES, make_scorer(estimator)(features), estimator.predict(features))


@pytest.fixture(scope="module")
def portable(
    estimator: LogisticRegression, reference: profile.ReferenceProfile, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("portable")
    example = pd.DataFrame(np.random.default_rng(1).normal(size=(3, N_FEATURES)), columns=list(FEATURE_NAMES))
    mlflow.pyfunc.save_model(
        str(root / "model"),
        **portable_model(root / "files", estimator, FEATURE_NAMES, reference),
        input_example=example,
        pip_requirements=pip_requirements(),
    )
    return root / "model"


def test_the_portable_code_imports_nothing_from_streamml() -> None:
    tree = ast.parse(PORTABLE_MODEL_CODE.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    roots = {name.split(".")[0] for name in imported}
    assert roots <= {"__future__", "json", "pathlib", "typing", "joblib", "mlflow", "numpy", "pandas"}, roots


def test_portable_pyfunc_scores_a_named_frame_and_an_array_like_the_fast_path(
    portable: Path, estimator: LogisticRegression
) -> None:
    features = np.random.default_rng(7).normal(size=(25, N_FEATURES))
    expected = make_scorer(estimator, FEATURE_NAMES)(features)
    model = mlflow.pyfunc.load_model(str(portable))
    frame = pd.DataFrame(features, columns=list(FEATURE_NAMES))
    through_pyfunc = model.predict(frame[list(reversed(FEATURE_NAMES))].assign(extra=1.0))  # by name, extras ignored
    assert isinstance(through_pyfunc, np.ndarray) and through_pyfunc.shape == (25,)
    assert through_pyfunc.dtype == np.float64
    np.testing.assert_allclose(through_pyfunc, expected, rtol=0, atol=1e-12)
    # The column-based signature makes pyfunc refuse a bare array; the model itself takes one in column order.
    python_model = model.unwrap_python_model()
    np.testing.assert_allclose(python_model.predict(None, features), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(python_model.predict(None, features[0]), expected[:1], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=f"\\(n, {N_FEATURES}\\)"):
        python_model.predict(None, features[:, :-1])
    with pytest.raises(ValueError, match="missing feature column"):
        python_model.predict(None, frame.drop(columns=[FEATURE_NAMES[4]]))


def test_portable_signature_is_one_named_double_per_feature(portable: Path) -> None:
    signature = mlflow.models.Model.load(str(portable)).signature
    assert signature is not None and not signature.inputs.is_tensor_spec()
    assert signature.inputs.input_names() == list(FEATURE_NAMES)
    assert [col.type for col in signature.inputs.inputs] == [DataType.double] * N_FEATURES
    assert [col.type for col in signature.outputs.inputs] == [DataType.double]


def test_portable_model_requirements_are_the_pins_and_its_artifacts_are_files(portable: Path) -> None:
    assert (portable / "requirements.txt").read_text().split() == pip_requirements()
    names = {path.name for path in (portable / "artifacts").iterdir()}
    assert names == {"estimator.joblib", "feature_names.json", profile.PROFILE_ARTIFACT}
    assert json.loads((portable / "artifacts" / "feature_names.json").read_text()) == list(FEATURE_NAMES)
    assert not (portable / "python_model.pkl").exists()  # nothing pickled by reference


def test_load_model_of_a_portable_model_gives_the_fast_path_and_the_profile(
    portable: Path, estimator: LogisticRegression, reference: profile.ReferenceProfile
) -> None:
    features = np.random.default_rng(8).normal(size=(30, N_FEATURES))
    loaded = load_model(str(portable))
    assert loaded.feature_names == FEATURE_NAMES
    assert loaded.profile == reference
    np.testing.assert_array_equal(loaded.scorer(features), estimator.predict_proba(features)[:, 1])
    np.testing.assert_array_equal(load_scorer(str(portable))(features), loaded.scorer(features))


def test_a_portable_model_on_some_columns_without_a_profile(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    columns = ("user_like_rate", "user_recent_like_r10", "movie_mean_shrunk")
    index = [FEATURE_NAMES.index(name) for name in columns]
    full = rng.normal(size=(200, N_FEATURES))
    narrow = LogisticRegression().fit(full[:, index], (full[:, index[1]] > 0).astype(int))
    mlflow.pyfunc.save_model(
        str(tmp_path / "model"),
        **portable_model(tmp_path / "files", narrow, columns),
        input_example=pd.DataFrame(full[:2, index], columns=list(columns)),
        pip_requirements=["mlflow"],
    )

    expected = narrow.predict_proba(full[:, index])[:, 1]
    loaded = load_model(str(tmp_path / "model"))
    assert loaded.feature_names == columns and loaded.profile is None
    np.testing.assert_array_equal(loaded.scorer(full), expected)
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    assert mlflow.models.Model.load(str(tmp_path / "model")).signature.inputs.input_names() == list(columns)
    np.testing.assert_allclose(model.predict(pd.DataFrame(full, columns=list(FEATURE_NAMES))), expected, atol=1e-12)


def test_a_corrupt_profile_is_ignored_and_the_model_still_loads(
    estimator: LogisticRegression,
    reference: profile.ReferenceProfile,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    arguments = portable_model(tmp_path / "files", estimator, FEATURE_NAMES, reference)
    (tmp_path / "files" / profile.PROFILE_ARTIFACT).write_text('{"format": 99}')
    example = pd.DataFrame(np.zeros((2, N_FEATURES)), columns=list(FEATURE_NAMES))
    mlflow.pyfunc.save_model(str(tmp_path / "model"), **arguments, input_example=example, pip_requirements=["mlflow"])
    with caplog.at_level(logging.WARNING, logger="streamml.models.pyfunc"):
        loaded = load_model(str(tmp_path / "model"))
    assert loaded.profile is None and "reference profile" in caplog.text
    features = np.zeros((2, N_FEATURES))
    np.testing.assert_array_equal(loaded.scorer(features), estimator.predict_proba(features)[:, 1])


def test_a_portable_model_that_never_saw_a_like_is_refused(tmp_path: Path) -> None:
    one_class = LogisticRegression().fit(np.zeros((4, N_FEATURES)) + np.arange(4)[:, None], [0, 2, 0, 2])
    with pytest.raises(ModelUnavailableError, match="like class"):
        portable_model(tmp_path, one_class)


def test_a_pyfunc_that_is_not_a_like_model_is_unavailable(tmp_path: Path) -> None:
    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context: object, model_input: pd.DataFrame, params: object = None) -> np.ndarray:
            return np.zeros(len(model_input))

    mlflow.pyfunc.save_model(str(tmp_path / "model"), python_model=Constant(), pip_requirements=["mlflow"])
    with pytest.raises(ModelUnavailableError, match="not a streamml like model"):
        load_model(str(tmp_path / "model"))
