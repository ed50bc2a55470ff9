"""What each feature family earns, measured honestly: chosen on a validation split inside history, reported on the
stream with a bootstrap interval over users, and the freshness curve of the final choice.

Families are added cumulatively in :data:`~streamml.features.spec.FAMILIES` order (the windowed aggregates first).
For each set: the validation AUC (fit on history before its own split quantile, scored on the rest of history; this
is what choices are made on), the stream AUC (fit on all of history, scored on the stream period with streaming
features), a percentile bootstrap interval of that AUC over stream users (users resampled with replacement, all of a
user's rows together), and the paired gain over the aggregates alone on the same resamples. The freshness curve
scores the final set and the aggregates alone with feedback 0, 10, 60 and 3600 s late.

    streamml models families --out docs/families.json
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from streamml import names
from streamml.features import spec

logger = logging.getLogger(__name__)

FRESHNESS_CURVE_LAGS: tuple[int, ...] = (0, 10, 60, 3600)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def bootstrap_users(users: np.ndarray, samples: int, seed: int) -> Callable[[np.ndarray, np.ndarray], list[float]]:
    """A function (labels, scores) -> AUC per resample, over the same ``samples`` resamples of the users at every
    call, so two scorers compared on it are paired."""
    unique, inverse = np.unique(users, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == index) for index in range(len(unique))]
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(unique), len(unique)) for _ in range(samples)]
    resamples = [np.concatenate([rows_of[user] for user in draw]) for draw in draws]

    def aucs(labels: np.ndarray, scores: np.ndarray) -> list[float]:
        return [_auc(labels[rows], scores[rows]) if np.unique(labels[rows]).size == 2 else np.nan for rows in resamples]

    return aucs


def _on_columns(scorer: Callable[[np.ndarray], np.ndarray], columns: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda matrix: scorer(matrix[:, columns])


def _interval(values: Sequence[float]) -> list[float]:
    finite = np.asarray([v for v in values if np.isfinite(v)])
    return [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]


def family_table(
    ratings: Any,
    movies: Any,
    fit: Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]],
    *,
    quantile: float = names.SPLIT_QUANTILE,
    samples: int = 200,
    seed: int = 42,
    lags: Sequence[int] = FRESHNESS_CURVE_LAGS,
) -> dict[str, Any]:
    """The families' table on MovieLens frames. ``fit(features, labels)`` returns a scorer (features -> P(like))."""
    from streamml.data.movielens import cutoff_index, sort_ratings

    ordered = sort_ratings(ratings)
    features = spec.point_in_time_features(spec.FeatureState.from_movies(movies), ordered)
    labels = (ordered["rating"].to_numpy() >= spec.LIKE_THRESHOLD).astype(np.int64)
    stamps = ordered["timestamp"].to_numpy()
    history = stamps < stamps[cutoff_index(len(stamps), quantile)]
    inner_cutoff = stamps[history][cutoff_index(int(history.sum()), quantile)]
    fit_rows, validation = stamps < inner_cutoff, history & (stamps >= inner_cutoff)
    stream = ~history
    resample = bootstrap_users(ordered["userId"].to_numpy()[stream], samples, seed)

    rows: list[dict[str, Any]] = []
    columns: list[int] = []
    scorers: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    base_resamples: list[float] = []
    for family, family_names in spec.FAMILIES.items():
        columns = columns + [spec.FEATURE_NAMES.index(name) for name in family_names]
        chosen = np.asarray(columns)
        validating = fit(features[fit_rows][:, chosen], labels[fit_rows])
        validation_auc = _auc(labels[validation], validating(features[validation][:, chosen]))
        scorer = fit(features[history][:, chosen], labels[history])
        scores = scorer(features[stream][:, chosen])
        values = resample(labels[stream], scores)
        if not base_resamples:
            base_resamples = values
        gains = [v - b for v, b in zip(values, base_resamples, strict=True)]
        rows.append(
            {
                "family": family,
                "features": len(columns),
                "validation_auc": validation_auc,
                "stream_auc": _auc(labels[stream], scores),
                "stream_auc_interval": _interval(values),
                "gain_interval": _interval(gains) if family != next(iter(spec.FAMILIES)) else [0.0, 0.0],
            }
        )
        scorers[family] = _on_columns(scorer, chosen)
        logger.info("family %s: %s", family, rows[-1])

    freshness: dict[str, dict[int, float]] = {}
    first, last = next(iter(spec.FAMILIES)), family
    for lag in lags:
        lagged = spec.point_in_time_features(spec.FeatureState.from_movies(movies), ordered, lag)[stream]
        for name in (first, last):
            freshness.setdefault(name, {})[lag] = _auc(labels[stream], scorers[name](lagged))
    return {
        "rows": rows,
        "freshness": freshness,
        "stream_rows": int(stream.sum()),
        "stream_users": len(np.unique(ordered["userId"].to_numpy()[stream])),
        "validation_rows": int(validation.sum()),
        "bootstrap_samples": samples,
    }


def markdown(table: dict[str, Any]) -> str:
    """The table and the freshness curve as markdown (docs/models.md)."""
    lines = [
        "| family added | features | validation AUC | stream AUC | 95% interval (users) | gain over aggregates |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in table["rows"]:
        low, high = row["stream_auc_interval"]
        gain_low, gain_high = row["gain_interval"]
        lines.append(
            f"| {row['family']} | {row['features']} | {row['validation_auc']:.4f} | {row['stream_auc']:.4f} | "
            f"[{low:.4f}, {high:.4f}] | [{gain_low:+.4f}, {gain_high:+.4f}] |"
        )
    lags = sorted(next(iter(table["freshness"].values())))
    lines += ["", "| features | " + " | ".join(f"{lag} s late" for lag in lags) + " |"]
    lines.append("|---|" + "---:|" * len(lags))
    for name, curve in table["freshness"].items():
        lines.append(f"| up to {name} | " + " | ".join(f"{curve[lag]:.4f}" for lag in lags) + " |")
    return "\n".join(lines)
