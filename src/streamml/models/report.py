"""What a training run leaves behind for people: the evaluation's artifacts (JSON, text and PNG figures logged with
the run) and the markdown comparison table of ``streamml models compare``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamml import names
from streamml.models.evaluate import (
    BASELINE_MOVIE,
    BASELINE_USER,
    BASELINES,
    MODEL,
    MODES,
    STREAMING,
    Evaluation,
    Table,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
