"""The logged pyfunc and the scorer's fast path, on a tiny model trained in-process (no server)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from streamml.errors import ModelUnavailableError
from streamml.features.spec import FEATURE_NAMES, N_FEATURES
from streamml.models.pyfunc import LikeModel, as_matrix, load_scorer, make_scorer


@pytest.fixture(scope="module")
def estimator() -> LogisticRegression:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, N_FEATURES))
    labels = (features[:, 2] + 0.5 * rng.normal(size=300) > 0).astype(int)
    return LogisticRegression().fit(features, labels)


@pytest.fixture(scope="module")
def saved(estimator: LogisticRegression, tmp_path_factory: pytest.TempPathFactory) -> Path:
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
