"""The compiled loop of :mod:`streamml.models.forest` (its own module: importing it compiles it, or loads numba's
on-disk cache, about 1 s the first time; only a scorer of a HistGradientBoosting model pays that)."""

from __future__ import annotations

import numpy as np
from numba import njit

SIGNATURE = (
    "void(float64[:, ::1], intp[::1], float64[::1], uint8[::1], uint8[::1], intp[::1], intp[::1], float64[::1], "
    "intp[::1], float64, float64[::1])"
)


@njit(SIGNATURE, cache=True, nogil=True)
def raw_scores(
    matrix: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_left: np.ndarray,
    is_leaf: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    value: np.ndarray,
    roots: np.ndarray,
    baseline: float,
    out: np.ndarray,
) -> None:
    """``out[i]`` = baseline + the leaf value of row i in each tree, added tree by tree (scikit-learn's order)."""
    for i in range(matrix.shape[0]):
        total = baseline
        for tree in range(roots.shape[0]):
            node = roots[tree]
            while not is_leaf[node]:
                x = matrix[i, feature[node]]
                if np.isnan(x):
                    node = left[node] if missing_left[node] else right[node]
                elif x <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            total += value[node]
        out[i] = total
