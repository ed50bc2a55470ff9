"""Honest evaluation on the stream period, in two modes, against baselines, with the run's artifacts.

Modes. ``streaming``: each stream row's features are computed from every rating strictly before it, earlier stream
ratings included; that is what the platform serves when the feature updater keeps up. ``frozen``: each stream row's
features come from the snapshot as of the cutoff (the history only), evaluated at the row's own timestamp; that is
what a platform serves whose features never learn from the stream. The model is the same in both modes.

Baselines, scored in both modes like the model: ``baseline_global`` (the history like-rate, a constant),
``baseline_movie`` (the ``movie_like_rate`` feature) and ``baseline_user`` (the ``user_like_rate`` feature).

The run's artifacts (figures, reports, the comparison table) are written by :mod:`.report`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamml import names
from streamml.features import snapshot_rows, spec

logger = logging.getLogger(__name__)

STREAMING = "streaming"
FROZEN = "frozen"
MODES: tuple[str, ...] = (STREAMING, FROZEN)
MODEL = "model"
BASELINE_GLOBAL = "baseline_global"
BASELINE_MOVIE = "baseline_movie"
BASELINE_USER = "baseline_user"
BASELINES: tuple[str, ...] = (BASELINE_GLOBAL, BASELINE_MOVIE, BASELINE_USER)
METRICS: tuple[str, ...] = ("auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1")
FRESHNESS_LAGS: tuple[int, ...] = (10, 60, 3600)
"""Feedback delays (seconds) of the freshness curve: streaming AUC when the updater applies each rating this late."""
_PROBABILITY_FLOOR = 1e-15
_USER_LIKE_RATE = spec.FEATURE_NAMES.index("user_like_rate")
_MOVIE_LIKE_RATE = spec.FEATURE_NAMES.index("movie_like_rate")

Table = dict[str, dict[str, dict[str, float]]]
"""mode -> scorer (``model`` or a baseline) -> metric -> value."""


@dataclass(frozen=True)
class StreamSet:
    """The stream period: labels, one feature matrix per mode (rows aligned), and the history like-rate."""

    labels: np.ndarray
    features: Mapping[str, np.ndarray]
    history_like_rate: float

    def __post_init__(self) -> None:
        for mode in MODES:
            if mode not in self.features:
                raise ValueError(f"stream set lacks the {mode} feature matrix")
            if self.features[mode].shape != (len(self.labels), spec.N_FEATURES):
                raise ValueError(f"{mode} features have shape {self.features[mode].shape}, labels {len(self.labels)}")


def classification_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float = names.DECISION_THRESHOLD
) -> dict[str, float]:
    """AUC and log loss / Brier of the probabilities; accuracy, precision, recall, F1 of ``scores >= threshold``.

    AUC is NaN when the labels hold a single class; precision is 0 when nothing is predicted positive.
    """
    from sklearn.metrics import (
        accuracy_score,
        brier_score_loss,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = np.asarray(labels).astype(np.int64)
    p = np.clip(np.asarray(scores, dtype=np.float64), _PROBABILITY_FLOOR, 1.0 - _PROBABILITY_FLOOR)
    if y.shape != p.shape or y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels and scores must be non-empty vectors of one length: {y.shape} vs {p.shape}")
    predicted = (p >= threshold).astype(np.int64)
    return {
        "auc": float(roc_auc_score(y, p)) if np.unique(y).size == 2 else math.nan,
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p, pos_label=1)),
        "accuracy": float(accuracy_score(y, predicted)),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
    }


def baseline_scores(features: np.ndarray, history_like_rate: float) -> dict[str, np.ndarray]:
    """The baselines' probabilities of "like" for a feature matrix."""
    return {
        BASELINE_GLOBAL: np.full(len(features), history_like_rate, dtype=np.float64),
        BASELINE_MOVIE: features[:, _MOVIE_LIKE_RATE].astype(np.float64),
        BASELINE_USER: features[:, _USER_LIKE_RATE].astype(np.float64),
    }


def snapshot_states(
    user_rows: Iterable[Mapping[str, Any]], movie_rows: Iterable[Mapping[str, Any]], globals_row: Mapping[str, Any]
) -> tuple[dict[int, spec.UserState], dict[int, spec.MovieState], spec.GlobalState]:
    """States from snapshot rows (the ``users``/``movies`` parts and the manifest's ``globals``)."""
    users = {int(row["userId"]): snapshot_rows.user_state_from_row(row) for row in user_rows}
    movies = {int(row["movieId"]): snapshot_rows.movie_state_from_row(row) for row in movie_rows}
    return users, movies, snapshot_rows.globals_from_row(globals_row)


def frozen_features(
    users: Mapping[int, spec.UserState],
    movies: Mapping[int, spec.MovieState],
    globals_: spec.GlobalState,
    user_ids: Sequence[int] | np.ndarray,
    movie_ids: Sequence[int] | np.ndarray,
    timestamps: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """FROZEN-mode features: every row from the same snapshot, at the row's own timestamp; a user or movie absent
    from the snapshot gets the priors, exactly as a never-seen one online."""
    return spec.feature_matrix(
        [users.get(int(user_id)) for user_id in user_ids],
        [movies.get(int(movie_id)) for movie_id in movie_ids],
        globals_,
        np.asarray(timestamps, dtype=np.int64),
    )


@dataclass
class Evaluation:
    """Everything measured about one model on one stream set."""

    labels: np.ndarray
    predictions: dict[str, np.ndarray]
    baselines: dict[str, dict[str, np.ndarray]]
    table: Table
    threshold: float
    importance: list[dict[str, float | str]] = field(default_factory=list)
    importance_meta: dict[str, Any] = field(default_factory=dict)
    freshness: dict[int, float] = field(default_factory=dict)
    """Streaming AUC per feedback lag in seconds (:data:`FRESHNESS_LAGS`; lag 0 is ``streaming_auc``)."""

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow: ``{mode}_{metric}`` for the model, ``{mode}_{baseline}_{metric}`` for baselines,
        ``streaming_auc_lag{seconds}`` for the freshness curve."""
        return flatten(self.table) | {f"{STREAMING}_auc_lag{lag}": auc for lag, auc in self.freshness.items()}


def flatten(table: Table) -> dict[str, float]:
    out: dict[str, float] = {}
    for mode, scorers in table.items():
        for scorer, metrics in scorers.items():
            prefix = f"{mode}_" if scorer == MODEL else f"{mode}_{scorer}_"
            out.update({prefix + name: value for name, value in metrics.items()})
    return out


def score_table(
    labels: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    baselines: Mapping[str, Mapping[str, np.ndarray]],
    threshold: float = names.DECISION_THRESHOLD,
) -> Table:
    """Metrics of the model's predictions and of every baseline, per mode."""
    table: Table = {}
    for mode, scores in predictions.items():
        table[mode] = {MODEL: classification_metrics(labels, scores, threshold)}
        for name, baseline in baselines[mode].items():
            table[mode][name] = classification_metrics(labels, baseline, threshold)
    return table


def evaluate(
    predict: Callable[[np.ndarray], np.ndarray],
    stream: StreamSet,
    threshold: float = names.DECISION_THRESHOLD,
) -> Evaluation:
    """Score the stream in both modes with ``predict`` (features -> P(like)) and with the baselines."""
    predictions = {mode: np.asarray(predict(stream.features[mode]), dtype=np.float64) for mode in MODES}
    baselines = {mode: baseline_scores(stream.features[mode], stream.history_like_rate) for mode in MODES}
    table = score_table(stream.labels, predictions, baselines, threshold)
    for mode in MODES:
        logger.info(
            "evaluated mode=%s rows=%d auc=%.4f log_loss=%.4f user_baseline_auc=%.4f",
            mode,
            len(stream.labels),
            table[mode][MODEL]["auc"],
            table[mode][MODEL]["log_loss"],
            table[mode][BASELINE_USER]["auc"],
        )
    return Evaluation(stream.labels, predictions, baselines, table, threshold)


def freshness_curve(
    predict: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    lagged_stream: Callable[[int], np.ndarray],
    lags: Sequence[int] = FRESHNESS_LAGS,
) -> dict[int, float]:
    """Streaming AUC of ``predict`` when feedback reaches the online features ``lag`` seconds late, per lag."""
    curve = {lag: classification_metrics(labels, predict(lagged_stream(lag)))["auc"] for lag in lags}
    logger.info("freshness curve %s", {lag: round(auc, 4) for lag, auc in curve.items()})
    return curve


def permutation_importances(
    estimator: Any, features: np.ndarray, labels: np.ndarray, rows: int, repeats: int, random_state: int
) -> list[dict[str, float | str]]:
    """Permutation importance (drop in ROC AUC) on a random sample of ``rows`` rows, most important first."""
    from sklearn.inspection import permutation_importance

    rng = np.random.default_rng(random_state)
    sample = np.sort(rng.choice(len(labels), size=min(rows, len(labels)), replace=False))
    result = permutation_importance(
        estimator,
        features[sample],
        labels[sample],
        scoring="roc_auc",
        n_repeats=repeats,
        random_state=random_state,
        n_jobs=1,
    )
    stats = zip(spec.FEATURE_NAMES, result.importances_mean, result.importances_std, strict=True)
    ranked = sorted(stats, key=lambda item: -float(item[1]))
    return [{"feature": name, "mean": float(mean), "std": float(std)} for name, mean, std in ranked]
