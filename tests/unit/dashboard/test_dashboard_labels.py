"""How the dashboard names its numbers: units and windows from the code that computes them, class names from the
shared facts."""

from __future__ import annotations

from streamml import names
from streamml.dashboard import labels
from streamml.features.spec import LIKE_THRESHOLD
from streamml.stores.features import APPLIED_LATENCY_WINDOW
from streamml.streaming.drift import DriftWindow
from streamml.streaming.metrics import MetricsHandler, MetricsState


def test_labelled_says_unit_and_window_and_leaves_out_what_is_missing() -> None:
    assert labels.labelled("Latency p99", "ms", "last 5,000 scored") == "Latency p99 (ms, last 5,000 scored)"
    assert labels.labelled("AUC", window="last 120 joined") == "AUC (last 120 joined)"
    assert labels.labelled("Throughput", "predictions/s") == "Throughput (predictions/s)"
    assert labels.labelled("Topics") == "Topics"


class NoStore:
    def applied_latencies_ms(self) -> list[float]:
        return []


def test_windows_are_the_aggregators_and_the_updaters() -> None:
    state = MetricsState()
    assert labels.QUALITY_WINDOW == state.window
    assert labels.LATENCY_WINDOW == state.latencies.maxlen
    assert labels.FEEDBACK_LAG == f"last {APPLIED_LATENCY_WINDOW:,} applied"
    assert labels.LATENCY == f"last {state.latencies.maxlen:,} scored"
    assert labels.THROUGHPUT == f"last {labels.PUBLISH_SECONDS:g} s"


def test_the_throughput_window_is_the_aggregators_publish_period() -> None:
    now = [0.0]
    handler = MetricsHandler(NoStore(), log=None, lag=dict, clock=lambda: now[0])  # type: ignore[arg-type]
    now[0] = labels.PUBLISH_SECONDS - 0.01
    assert not handler([]).outputs  # no snapshot yet
    now[0] = labels.PUBLISH_SECONDS
    assert handler([]).outputs  # a snapshot over exactly that period


def test_joined_window_prefers_the_snapshots_own_size() -> None:
    assert labels.joined_window(1234) == "last 1,234 joined"
    assert labels.joined_window() == f"last {labels.QUALITY_WINDOW:,} joined"
    assert labels.joined_window(0) == "last 0 joined"


def test_the_drift_window_is_the_monitors() -> None:
    assert labels.drift_window() == f"last {DriftWindow().size:,} scored"
    assert labels.drift_window(1234) == "last 1,234 scored"


def test_class_labels_come_from_the_shared_names_and_threshold() -> None:
    assert labels.threshold_text(4.0) == "4" and labels.threshold_text(3.5) == "3.5"
    assert LIKE_THRESHOLD == 4.0
    assert labels.CLASS_LABELS == ("dislike (< 4)", "like (>= 4)")
    assert labels.class_labels() == [f"{names.CLASS_NAMES[0]} (< 4)", f"{names.CLASS_NAMES[1]} (>= 4)"]
    assert labels.class_labels(["no", "yes"], threshold=3.5) == ["no (< 3.5)", "yes (>= 3.5)"]
    assert labels.class_labels(["one", "two", "three"]) == list(labels.CLASS_LABELS)


def test_fmt_writes_a_missing_value_as_a_dash() -> None:
    assert labels.fmt(None) == "—"
    assert labels.fmt(0.81234) == "0.812"
    assert labels.fmt(12345.6, ",.0f", " ms") == "12,346 ms"
    assert labels.fmt(0, ",") == "0"
