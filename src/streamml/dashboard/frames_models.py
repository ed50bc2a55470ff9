"""The Models page's frames: registry versions side by side and a version's report (metrics by mode, confusion
matrix, classification report, feature importance), training runs and datasets, from the API's JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from streamml import names
from streamml.dashboard.labels import class_labels
from streamml.dashboard.values import number, parse_time, version_key


def versions_table(models: Mapping[str, Any]) -> pd.DataFrame:
    """One row per registered version, newest first: ``version, aliases, model_type, created, run_id`` and the
    gate metric."""
    rows = []
    for v in models.get("versions", []):
        metrics = v.get("metrics") or {}
        rows.append(
            {
                "version": str(v["version"]),
                "aliases": ", ".join(v.get("aliases") or []),
                "model_type": v.get("model_type") or "",
                "created": parse_time(v.get("created")),
                "streaming_auc": number(metrics.get("streaming_auc")),
                "run_id": v.get("run_id") or "",
            }
        )
    frame = pd.DataFrame(rows, columns=["version", "aliases", "model_type", "created", "streaming_auc", "run_id"])
    if frame.empty:
        return frame
    return frame.sort_values("version", key=lambda s: s.map(version_key), ascending=False).reset_index(drop=True)


def compare_versions(models: Mapping[str, Any], versions: Sequence[str] | None = None) -> pd.DataFrame:
    """Metrics side by side: one row per metric (the gate's first), one column per version labelled
    ``v3 (champion)``."""
    chosen = [v for v in models.get("versions", []) if versions is None or str(v["version"]) in versions]
    chosen.sort(key=lambda v: version_key(str(v["version"])), reverse=True)
    metric_names: list[str] = [m for m in names.SUMMARY_METRICS if any(m in (v.get("metrics") or {}) for v in chosen)]
    metric_names += sorted({m for v in chosen for m in (v.get("metrics") or {})} - set(metric_names))
    data = {}
    for v in chosen:
        label = f"v{v['version']}" + (f" ({', '.join(v['aliases'])})" if v.get("aliases") else "")
        data[label] = [number((v.get("metrics") or {}).get(m)) for m in metric_names]
    return pd.DataFrame(data, index=pd.Index(metric_names, name="metric"))


FRESHNESS_PREFIX = "streaming_auc_lag"


def freshness_frame(models: Mapping[str, Any], versions: Sequence[str] | None = None) -> pd.DataFrame:
    """``version, lag_s, auc``: each version's streaming AUC with feedback 0 s late (``streaming_auc``) and each lag of
    its ``streaming_auc_lag{s}`` metrics; a version logged without the curve has no rows."""
    rows = []
    for v in models.get("versions", []):
        if versions is not None and str(v["version"]) not in versions:
            continue
        metrics = v.get("metrics") or {}
        lags = {int(k.removeprefix(FRESHNESS_PREFIX)): m for k, m in metrics.items() if k.startswith(FRESHNESS_PREFIX)}
        if not lags or "streaming_auc" not in metrics:
            continue
        label = f"v{v['version']}" + (f" ({', '.join(v['aliases'])})" if v.get("aliases") else "")
        for lag, auc in sorted({0: metrics["streaming_auc"], **lags}.items()):
            rows.append({"version": label, "lag_s": lag, "auc": number(auc)})
    return pd.DataFrame(rows, columns=["version", "lag_s", "auc"])


def confusion_frame(matrix: Sequence[Sequence[int]], classes: Sequence[str] | None = None) -> pd.DataFrame:
    """``actual, predicted, count, share`` cells of a confusion matrix ``[[tn, fp], [fn, tp]]`` (rows actual)."""
    classes = class_labels(classes)
    total = sum(sum(row) for row in matrix) or 1
    rows = [
        {"actual": classes[i], "predicted": classes[j], "count": int(count), "share": count / total}
        for i, row in enumerate(matrix)
        for j, count in enumerate(row)
    ]
    return pd.DataFrame(rows, columns=["actual", "predicted", "count", "share"])


def importance_frame(importance: Sequence[Mapping[str, Any]], top: int = 20) -> pd.DataFrame:
    """``feature, importance`` sorted by importance, at most ``top`` rows."""
    frame = pd.DataFrame(
        [{"feature": str(i["feature"]), "importance": float(i["importance"])} for i in importance],
        columns=["feature", "importance"],
    )
    return frame.sort_values("importance", ascending=False).head(top).reset_index(drop=True)


def classification_frame(report: Mapping[str, Any], classes: Sequence[str] | None = None) -> pd.DataFrame:
    """sklearn's ``classification_report(output_dict=True)`` as a table (one row per class and average)."""
    labels = class_labels(classes)
    raw = list(classes) if classes and len(classes) == 2 else ["0", "1"]
    rename = {"0": labels[0], "1": labels[1], raw[0]: labels[0], raw[1]: labels[1]}
    rows = []
    for name, values in report.items():
        if isinstance(values, Mapping):
            label = rename.get(str(name), str(name))
            rows.append({"class": label, **{k: number(v) for k, v in values.items()}})
        elif name == "accuracy":
            rows.append({"class": "accuracy", "f1-score": number(values)})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index("class").astype(float)


def report_metrics(report: Mapping[str, Any]) -> pd.DataFrame:
    """A report's metrics by mode: one row per metric (the model's own first, then the baselines), one column per
    mode (``streaming`` first)."""
    modes = report.get("metrics") or {}
    if modes and not all(isinstance(v, Mapping) for v in modes.values()):
        modes = {"value": modes}
    modes = dict(sorted(modes.items(), key=lambda kv: kv[0] != "streaming"))
    metric_names = sorted({m for values in modes.values() for m in values}, key=_metric_order)
    return pd.DataFrame(
        {mode: [number(values.get(m)) for m in metric_names] for mode, values in modes.items()},
        index=pd.Index(metric_names, name="metric"),
        dtype=float,
    )


_METRIC_ORDER = ("auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1")


def _metric_order(name: str) -> tuple[bool, int, str]:
    if name.startswith("baseline_"):
        return (True, 0, name)
    return (False, _METRIC_ORDER.index(name) if name in _METRIC_ORDER else len(_METRIC_ORDER), name)


def runs_table(runs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Training runs: ``run_name, status, start_time, model_type, streaming_auc, run_id``."""
    rows = [
        {
            "run_name": r.get("run_name") or "",
            "status": r.get("status") or "",
            "start_time": parse_time(r.get("start_time")),
            "model_type": (r.get("params") or {}).get("model_type", ""),
            "streaming_auc": number((r.get("metrics") or {}).get("streaming_auc")),
            "run_id": r.get("run_id") or "",
        }
        for r in runs
    ]
    return pd.DataFrame(rows, columns=["run_name", "status", "start_time", "model_type", "streaming_auc", "run_id"])


def datasets_table(snapshots: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per raw snapshot (or feature version): its scalar fields, with row counts under ``rows`` flattened
    and nested detail (checksums, sizes) left out; ``created`` parsed as a time."""
    rows = []
    for s in snapshots:
        row = {k: v for k, v in s.items() if not isinstance(v, Mapping | list)}
        row.update({f"{k}_rows" if k in row else k: v for k, v in (s.get("rows") or {}).items()})
        if "created" in row:
            row["created"] = parse_time(row["created"])
        rows.append(row)
    return pd.DataFrame(rows)


def by_mode(value: Any) -> dict[str, Any]:
    """A report entry (confusion matrix or classification report) per evaluation mode.

    ``{"streaming": x, "frozen": y}`` comes back as is; a single matrix or report as ``{"": x}``; nothing as ``{}``.
    """
    if value is None or len(value) == 0:
        return {}
    if isinstance(value, list):
        return {"": value}  # one confusion matrix
    per_mode = all(
        isinstance(v, list) or (isinstance(v, Mapping) and any(isinstance(x, Mapping) for x in v.values()))
        for v in value.values()
    )  # a report's own values are per-class dicts *and* the accuracy float; a mode's value is a whole report
    return dict(value) if per_mode else {"": value}
