"""Honest evaluation on the stream period, in two modes, against baselines, with the run's artifacts.

Modes. ``streaming``: each stream row's features are computed from every rating strictly before it, earlier stream
ratings included; that is what the platform serves when the feature updater keeps up. ``frozen``: each stream row's
features come from the snapshot as of the cutoff (the history only), evaluated at the row's own timestamp; that is
what a platform serves whose features never learn from the stream. The model is the same in both modes.

Baselines, scored in both modes like the model: ``baseline_global`` (the history like-rate, a constant),
``baseline_movie`` (the ``movie_like_rate`` feature) and ``baseline_user`` (the ``user_like_rate`` feature).

Run ``python -m streamml.models.evaluate --feature-version 1`` to train every model type with its default config
and print the comparison table in markdown (nothing is registered; ``--mlflow`` logs the runs to a separate
experiment).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamml import names
from streamml.features import spec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
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
    users = {int(row["userId"]): spec.user_state_from_row(row) for row in user_rows}
    movies = {int(row["movieId"]): spec.movie_state_from_row(row) for row in movie_rows}
    return users, movies, spec.globals_from_row(globals_row)


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

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow: ``{mode}_{metric}`` for the model, ``{mode}_{baseline}_{metric}`` for baselines."""
        return flatten(self.table)


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
    threshold: float = 0.5,
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
    threshold: float = 0.5,
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


# Artifacts.


def _confusion(labels: np.ndarray, scores: np.ndarray, threshold: float) -> list[list[int]]:
    from sklearn.metrics import confusion_matrix

    return [[int(v) for v in row] for row in confusion_matrix(labels, (scores >= threshold).astype(int), labels=[0, 1])]


def _figure(width: float = 6.0, height: float = 4.5, ncols: int = 1) -> tuple[Figure, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas: no display, no pyplot global state
    return figure, figure.subplots(1, ncols, squeeze=False)[0]


def write_artifacts(evaluation: Evaluation, directory: Path, title: str = "model") -> list[Path]:
    """Write the evaluation's artifacts into ``directory``; return their paths.

    confusion_matrix.json/.png, classification_report.json/.txt, roc_curve.png, calibration.png,
    evaluation.json/.md (the metric table), permutation_importance.json/.png when importance was computed.
    """
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import classification_report, roc_curve

    directory.mkdir(parents=True, exist_ok=True)
    y, threshold = evaluation.labels, evaluation.threshold
    written: list[Path] = []

    def dump(name: str, payload: Any) -> None:
        path = directory / name
        path.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=True) + "\n")
        written.append(path)

    confusions = {mode: _confusion(y, evaluation.predictions[mode], threshold) for mode in MODES}
    dump(
        "confusion_matrix.json",
        {"labels": list(names.CLASS_NAMES), "threshold": threshold, "rows_are": "true class", "matrices": confusions},
    )
    figure, axes = _figure(4.5, 4.0, ncols=len(MODES))
    for ax, mode in zip(axes, MODES, strict=True):
        matrix = np.array(confusions[mode])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            color = "white" if value > matrix.max() / 2 else "black"
            ax.text(j, i, f"{value}", ha="center", va="center", color=color)
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=names.CLASS_NAMES, yticklabels=names.CLASS_NAMES)
        ax.set(xlabel="predicted", ylabel="true", title=f"{title}: {mode} (threshold {threshold:g})")
    written.append(_save(figure, directory / "confusion_matrix.png"))

    reports = {
        mode: classification_report(
            y,
            (evaluation.predictions[mode] >= threshold).astype(int),
            labels=[0, 1],
            target_names=names.CLASS_NAMES,
            output_dict=True,
            zero_division=0,
        )
        for mode in MODES
    }
    dump("classification_report.json", reports)
    text = "\n".join(
        f"== {mode} ==\n"
        + str(
            classification_report(
                y,
                (evaluation.predictions[mode] >= threshold).astype(int),
                labels=[0, 1],
                target_names=names.CLASS_NAMES,
                digits=4,
                zero_division=0,
            )
        )
        for mode in MODES
    )
    (directory / "classification_report.txt").write_text(text)
    written.append(directory / "classification_report.txt")

    figure, (ax,) = _figure()
    for mode in MODES:
        fpr, tpr, _ = roc_curve(y, evaluation.predictions[mode])
        ax.plot(fpr, tpr, label=f"{title} {mode} (AUC {evaluation.table[mode][MODEL]['auc']:.3f})")
    for name in (BASELINE_USER, BASELINE_MOVIE):
        fpr, tpr, _ = roc_curve(y, evaluation.baselines[STREAMING][name])
        auc = evaluation.table[STREAMING][name]["auc"]
        ax.plot(fpr, tpr, linestyle="--", label=f"{name} streaming (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on the stream")
    ax.legend(loc="lower right", fontsize="small")
    written.append(_save(figure, directory / "roc_curve.png"))

    figure, (ax,) = _figure()
    for mode in MODES:
        observed, predicted = calibration_curve(y, evaluation.predictions[mode], n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=f"{title} {mode}")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, label="perfectly calibrated")
    ax.set(xlabel="mean predicted P(like)", ylabel="observed like-rate", title="Calibration on the stream (deciles)")
    ax.legend(loc="upper left", fontsize="small")
    written.append(_save(figure, directory / "calibration.png"))

    dump("evaluation.json", evaluation.table)
    (directory / "evaluation.md").write_text(markdown_table(table_rows(evaluation.table, title)) + "\n")
    written.append(directory / "evaluation.md")

    if evaluation.importance:
        dump("permutation_importance.json", {**evaluation.importance_meta, "features": evaluation.importance})
        shown = evaluation.importance[::-1]
        figure, (ax,) = _figure(7.0, 8.0)
        ax.barh(
            [str(item["feature"]) for item in shown],
            [float(item["mean"]) for item in shown],
            xerr=[float(item["std"]) for item in shown],
        )
        ax.set(xlabel="drop in ROC AUC when permuted", title=f"{title}: permutation importance (streaming)")
        ax.tick_params(axis="y", labelsize="small")
        written.append(_save(figure, directory / "permutation_importance.png"))
    return written


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=100)
    return path


# The comparison table.


def table_rows(table: Table, model_label: str) -> list[dict[str, Any]]:
    """Rows (one per scorer) with AUC and log loss in both modes, the model first."""
    scorers = [MODEL, *BASELINES]
    return [
        {
            "name": model_label if scorer == MODEL else scorer,
            **{f"{mode}_{metric}": table[mode][scorer][metric] for mode in MODES for metric in ("auc", "log_loss")},
        }
        for scorer in scorers
    ]


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of :func:`table_rows`-shaped rows."""
    header = "| model | streaming AUC | streaming log loss | frozen AUC | frozen log loss |"
    lines = [header, "|---|---:|---:|---:|---:|"]
    for row in rows:
        cells = [f"{row[f'{mode}_{metric}']:.4f}" for mode in MODES for metric in ("auc", "log_loss")]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamml.models.evaluate``: train every model type, print the comparison table."""
    from streamml.config import get_settings
    from streamml.logging import configure_logging
    from streamml.models.train import MODEL_TYPES, compare

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--feature-version", type=int, required=True, help="feature version to train and evaluate on")
    parser.add_argument("--models", default=",".join(MODEL_TYPES), help="comma-separated model types")
    parser.add_argument("--mlflow", action="store_true", help="also log each run (never registered) to MLflow")
    parser.add_argument("--experiment", default="movielens-like-comparison", help="experiment for --mlflow")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    rows = compare(
        get_settings(),
        args.feature_version,
        [name.strip() for name in args.models.split(",") if name.strip()],
        experiment=args.experiment if args.mlflow else None,
    )
    sys.stdout.write(markdown_table(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
