"""The compiled trees give scikit-learn's scores to the last bit, and stand aside for any model they do not cover."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

from streamml.features.spec import N_FEATURES
from streamml.models.forest import compile_forest
from streamml.models.pyfunc import make_scorer


def _data(n: int, seed: int, missing: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, N_FEATURES)) * rng.uniform(0.1, 100, size=N_FEATURES)
    labels = (features[:, 0] + 0.01 * features[:, 3] + rng.normal(size=n) > 0).astype(int)
    features[rng.random(features.shape) < missing] = np.nan  # both ways: the trees learn where missing values go
    return features, labels


@pytest.fixture(scope="module")
def fitted() -> HistGradientBoostingClassifier:
    features, labels = _data(3000, 1)
    return HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, random_state=0).fit(features, labels)


def test_scores_equal_predict_proba_bit_for_bit(fitted: HistGradientBoostingClassifier) -> None:
    forest = compile_forest(fitted)
    assert forest is not None and len(forest.roots) == fitted.n_iter_
    features, _ = _data(2000, 2, missing=0.2)
    features[:50] = np.inf
    features[50:100] = -1e308
    expected = fitted.predict_proba(features)[:, 1]
    for rows in (features, features[:1], features[7:8], features[::3]):  # a strided view too
        np.testing.assert_array_equal(forest.predict_like(rows), fitted.predict_proba(rows)[:, 1])
    np.testing.assert_array_equal(forest.predict_like(features), expected)
    assert 0.05 < float(np.std(expected))  # the rows reach different leaves


def test_the_scorer_uses_the_compiled_trees_and_gives_the_same_scores(
    fitted: HistGradientBoostingClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    features, _ = _data(300, 3)
    compiled = make_scorer(fitted)
    plain = make_scorer(fitted, compiled=False)
    np.testing.assert_array_equal(compiled(features), plain(features))
    monkeypatch.setattr(fitted, "predict_proba", lambda _: pytest.fail("the compiled scorer called predict_proba"))
    compiled(features)


def test_a_model_the_trees_do_not_cover_keeps_scikit_learns_path() -> None:
    features, labels = _data(600, 4, missing=0)
    assert compile_forest(RandomForestClassifier(n_estimators=3, random_state=0).fit(features, labels)) is None
    three = HistGradientBoostingClassifier(max_iter=5).fit(features, labels + (features[:, 1] > 1))
    assert compile_forest(three) is None  # three classes: a tree per class and a softmax
    codes = np.abs(features.copy()).astype(int) % 4
    categorical = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0]).fit(codes, labels)
    assert compile_forest(categorical) is None


def test_a_difference_on_the_probe_rows_falls_back(
    fitted: HistGradientBoostingClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If scikit-learn's internals ever changed what a node means, the check at load catches it."""
    real = fitted.predict_proba
    monkeypatch.setattr(fitted, "predict_proba", lambda x: real(x) * 0.999 + 0.0005)
    assert compile_forest(fitted) is None
