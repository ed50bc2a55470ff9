"""A fitted HistGradientBoostingClassifier's trees as flat arrays, predicted by one compiled loop (numba).

scikit-learn predicts tree by tree: a Python call, an output array and an OpenMP region per tree, 300 of them for
the default model, whatever the number of rows. That fixed cost dominates the scorer's micro-batches (measured on
the champion: one row 3.17 ms, 500 rows 15.9 ms; compiled 0.011 ms and 6.28 ms; docs/benchmarks.md). Here every tree's
nodes are concatenated once at load, and one compiled function walks each row through every tree.

The result is the same number, not an approximation: the same comparisons as scikit-learn's ``_predictor.pyx`` (a
missing value goes where the node's ``missing_go_to_left`` says, otherwise ``x <= num_threshold`` goes left), the
raw score summed in the same order (the baseline, then tree by tree) and the same ``expit``. :func:`compile_forest`
checks it on probe rows against ``predict_proba`` and returns None (the caller keeps scikit-learn's path) for any
model it does not cover (categorical splits, more than two classes, another estimator) or any difference at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from scipy.special import expit

logger = logging.getLogger(__name__)

PROBE_ROWS = 256


@dataclass(frozen=True)
class CompiledForest:
    """The nodes of every tree, concatenated; ``roots[t]`` is tree t's first node, children are global indices."""

    feature: np.ndarray  # intp
    threshold: np.ndarray  # float64
    missing_left: np.ndarray  # uint8
    is_leaf: np.ndarray  # uint8
    left: np.ndarray  # intp
    right: np.ndarray  # intp
    value: np.ndarray  # float64
    roots: np.ndarray  # intp
    baseline: float
    like_is_positive: bool  # the like class is the one expit(raw) scores (classes_ sorted: label 1 is column 1)

    def raw(self, features: np.ndarray) -> np.ndarray:
        matrix = np.ascontiguousarray(features, dtype=np.float64)
        out = np.empty(len(matrix), dtype=np.float64)
        _kernel()(
            matrix, self.feature, self.threshold, self.missing_left, self.is_leaf, self.left, self.right,
            self.value, self.roots, self.baseline, out,
        )  # fmt: skip
        return out

    def predict_like(self, features: np.ndarray) -> np.ndarray:
        """P(like) of each row of ``features`` (the estimator's own columns, in its order)."""
        like = expit(self.raw(features))
        return like if self.like_is_positive else 1.0 - like


@cache
def _kernel() -> Callable[..., None]:
    """The compiled loop, imported on first use: only a process that scores trees pays numba's import (about 1.5 s)."""
    from streamml.models._forest_kernel import raw_scores

    return raw_scores


def compile_forest(estimator: Any) -> CompiledForest | None:
    """The compiled form of ``estimator``, or None when it is not a binary, numeric-only HistGradientBoosting
    classifier or when its scores differ from ``predict_proba`` on probe rows in any digit."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    if type(estimator) is not HistGradientBoostingClassifier or estimator.n_trees_per_iteration_ != 1:
        return None
    if estimator.is_categorical_ is not None and np.any(estimator.is_categorical_):
        return None
    classes = list(estimator.classes_)
    if len(classes) != 2 or 1 not in classes:
        return None
    trees = [predictors[0].nodes for predictors in estimator._predictors]
    sizes = np.array([len(nodes) for nodes in trees], dtype=np.intp)
    roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    nodes = np.concatenate(trees)
    offsets = np.repeat(roots, sizes)
    leaf = nodes["is_leaf"].astype(np.uint8)
    forest = CompiledForest(
        feature=nodes["feature_idx"].astype(np.intp),
        threshold=nodes["num_threshold"].astype(np.float64),
        missing_left=nodes["missing_go_to_left"].astype(np.uint8),
        is_leaf=leaf,
        # a leaf's children are never followed; point them at the leaf itself so every index is valid
        left=np.where(leaf, np.arange(len(nodes)), nodes["left"] + offsets).astype(np.intp),
        right=np.where(leaf, np.arange(len(nodes)), nodes["right"] + offsets).astype(np.intp),
        value=nodes["value"].astype(np.float64),
        roots=roots,
        baseline=float(np.asarray(estimator._baseline_prediction).reshape(-1)[0]),
        like_is_positive=classes.index(1) == 1,
    )
    probe = _probe_rows(forest, estimator.n_features_in_)
    expected = np.asarray(estimator.predict_proba(probe)[:, classes.index(1)], dtype=np.float64)
    got = forest.predict_like(probe)
    if not np.array_equal(got, expected):
        worst = float(np.nanmax(np.abs(got - expected)))
        logger.warning("compiled trees differ from predict_proba (max |diff| %.3g); using scikit-learn's", worst)
        return None
    logger.info("compiled %d trees (%d nodes) for scoring", len(trees), len(nodes))
    return forest


def _probe_rows(forest: CompiledForest, n_features: int) -> np.ndarray:
    """Rows that take every kind of branch: values at, just below and just above the split thresholds, missing
    values, infinities and extremes."""
    rng = np.random.default_rng(0)
    split = forest.is_leaf == 0
    rows = rng.normal(size=(PROBE_ROWS, n_features)) * 10
    for f in range(n_features):
        thresholds = forest.threshold[split & (forest.feature == f)]
        thresholds = thresholds[np.isfinite(thresholds)]
        if len(thresholds):
            picked = rng.choice(thresholds, PROBE_ROWS)
            rows[:, f] = np.select(
                [rng.random(PROBE_ROWS) < 1 / 3, rng.random(PROBE_ROWS) < 1 / 2],
                [picked, np.nextafter(picked, np.inf)],
                np.nextafter(picked, -np.inf),
            )
    specials = rng.random(rows.shape)
    rows[specials < 0.05] = np.nan
    rows[(specials >= 0.05) & (specials < 0.07)] = np.inf
    rows[(specials >= 0.07) & (specials < 0.09)] = -np.inf
    rows[(specials >= 0.09) & (specials < 0.1)] = 1e300
    return rows
