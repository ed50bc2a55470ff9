"""The Live page's frames: what the metrics aggregator writes to Redis, shaped for charts and tables.

Pure functions of raw values, so they are unit-tested without Redis; :mod:`.live_metrics` reads the values."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from streamml.streaming.metrics import MetricsSnapshot

HISTORY_COLUMNS = (
    "time", "auc", "accuracy", "mae", "log_loss", "throughput_per_s", "latency_p50_ms", "latency_p99_ms",
    "dlq_total", "lag_total", "joined_total", "window", "model_version",
)  # fmt: skip
RECENT_COLUMNS = ("request_id", "model_version", "y_pred", "y_true", "absolute_error", "latency_ms", "event_time")


def history_frame(raw: Iterable[bytes | str]) -> pd.DataFrame:
    """Snapshots as rows; ``time`` is a UTC timestamp, ``lag_total`` the scorer's lag summed over partitions.

    Unreadable entries are skipped (an old schema must not break the page)."""
    rows = []
    for item in raw:
        try:
            snap = MetricsSnapshot.model_validate_json(item)
        except ValueError:
            continue
        rows.append(
            {
                "time": datetime.fromtimestamp(snap.at, UTC),
                "auc": snap.auc,
                "accuracy": snap.accuracy,
                "mae": snap.mae,
                "log_loss": snap.log_loss,
                "throughput_per_s": snap.throughput_per_s,
                "latency_p50_ms": snap.latency_p50_ms,
                "latency_p99_ms": snap.latency_p99_ms,
                "dlq_total": snap.dlq_total,
                "lag_total": sum(snap.lag.values()),
                "joined_total": snap.joined_total,
                "window": snap.window,
                "model_version": snap.model_version,
            }
        )
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    for col in HISTORY_COLUMNS[1:-1]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def recent_frame(raw: Iterable[bytes | str]) -> pd.DataFrame:
    """The joined predictions the aggregator keeps in ``metrics:recent``, newest first."""
    rows = []
    for item in raw:
        try:
            data = json.loads(item)
            rows.append(
                {
                    "request_id": str(data["request_id"]),
                    "model_version": str(data["model_version"]),
                    "y_pred": float(data["y_pred"]),
                    "y_true": int(data["y_true"]),
                    "absolute_error": abs(int(data["y_true"]) - float(data["y_pred"])),
                    "latency_ms": float(data["latency_ms"]),
                    "event_time": datetime.fromtimestamp(int(data["event_ts"]), UTC),
                }
            )
        except (ValueError, KeyError, TypeError):
            continue
    return pd.DataFrame(rows[::-1], columns=list(RECENT_COLUMNS))


def long_series(
    history: pd.DataFrame, columns: Sequence[str], labels: Mapping[str, str] | None = None, gap_seconds: float = 30.0
) -> pd.DataFrame:
    """``time, series, value, segment`` rows of the given columns (for one multi-line chart). Rows without a value
    are dropped, so a restarted aggregator's empty window leaves a gap instead of a drop to zero; ``segment`` counts
    pauses longer than ``gap_seconds``, so a chart draws separate lines instead of bridging them."""
    if history.empty:
        return pd.DataFrame({"time": [], "series": [], "value": [], "segment": []})
    frame = history.melt(id_vars=["time"], value_vars=list(columns), var_name="series", value_name="value")
    frame = frame.dropna(subset=["value"]).sort_values(["series", "time"])
    gaps = frame.groupby("series")["time"].diff().dt.total_seconds() > gap_seconds
    frame["segment"] = gaps.astype(int).groupby(frame["series"]).cumsum()
    if labels:
        frame["series"] = frame["series"].map(lambda s: labels.get(s, s))
    return frame.reset_index(drop=True)


def error_histogram(errors: Sequence[float], bins: int = 20) -> pd.DataFrame:
    """Counts of absolute errors in ``bins`` equal bins over [0, 1] (fixed edges, so the chart does not jump as data
    arrives); ``bin_start, bin_end, count``."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    values = np.clip(np.asarray(errors, dtype=np.float64), 0.0, 1.0)
    counts, _ = np.histogram(values, bins=edges)
    return pd.DataFrame({"bin_start": edges[:-1], "bin_end": edges[1:], "count": counts.astype(int)})


def lag_frame(lag: Mapping[str, int]) -> pd.DataFrame:
    """``partition, lag`` sorted by partition number."""
    items = sorted(((int(p), int(v)) for p, v in lag.items()), key=lambda x: x[0])
    return pd.DataFrame({"partition": [str(p) for p, _ in items], "lag": [v for _, v in items]})
