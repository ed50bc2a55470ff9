"""How the dashboard writes and names its numbers: the unit and the window of each, and the class names.

The windows are the ones the numbers are computed over, read from the code that computes them: the metrics
aggregator (:mod:`streamml.streaming.metrics`, run with its defaults) keeps the rolling quality over its last joined
predictions, the latency percentiles over its last scored predictions and the throughput between two snapshots; the
feature updater (:mod:`streamml.stores.features`) keeps the feedback lag of its last applied ratings; the drift
monitor (:mod:`streamml.streaming.drift`) compares its last scored predictions with the champion's training data.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamml import names
from streamml.features.spec import LIKE_THRESHOLD
from streamml.stores.features import APPLIED_LATENCY_WINDOW
from streamml.streaming.drift import WINDOW as DRIFT_WINDOW
from streamml.streaming.metrics import LATENCY_WINDOW, PUBLISH_SECONDS, QUALITY_WINDOW

SINCE_START = "since the aggregator started"


def labelled(name: str, unit: str | None = None, window: str | None = None) -> str:
    """``name (unit, window)``, leaving out what is not given: ``labelled("Latency p99", "ms", "last 5,000
    scored")`` is ``Latency p99 (ms, last 5,000 scored)``."""
    detail = ", ".join(part for part in (unit, window) if part)
    return f"{name} ({detail})" if detail else name


def last(count: int, what: str) -> str:
    """A window of the latest ``count`` events: ``last 5,000 joined``."""
    return f"last {count:,} {what}"


def joined_window(window: int | None = None) -> str:
    """The window of the rolling quality: the snapshot's own size when known (it is smaller while the aggregator
    fills it after a start), else the most it holds."""
    return last(QUALITY_WINDOW if window is None else window, "joined")


def drift_window(window: int | None = None) -> str:
    """The window of the drift report: the report's own size when known (smaller while the monitor fills it), else
    the most it holds."""
    return last(DRIFT_WINDOW if window is None else window, "scored")


PSI_READING = "PSI below 0.1 is stable, 0.1 to 0.25 a moderate shift, above 0.25 a major one"
"""How PSI is usually read (:mod:`streamml.models.profile`)."""

LATENCY = last(LATENCY_WINDOW, "scored")
FEEDBACK_LAG = last(APPLIED_LATENCY_WINDOW, "applied")
THROUGHPUT = f"last {PUBLISH_SECONDS:g} s"


def fmt(value: float | None, spec: str = ".3f", suffix: str = "") -> str:
    """A number for ``st.metric`` in the format ``spec`` (``",.0f"``, ``".1f"``); a missing value is an em dash."""
    return "—" if value is None else f"{value:{spec}}{suffix}"


def threshold_text(threshold: float = LIKE_THRESHOLD) -> str:
    """The like threshold as people write it: ``4`` for 4.0, ``3.5`` for 3.5."""
    return f"{threshold:g}"


def class_labels(classes: Sequence[str] | None = None, threshold: float = LIKE_THRESHOLD) -> list[str]:
    """Readable class names with the rating threshold: ``dislike (< 4)``, ``like (>= 4)``. ``classes`` are the
    API's ``class_names``; anything but two names falls back to :data:`streamml.names.CLASS_NAMES`."""
    chosen = classes if classes and len(classes) == 2 else names.CLASS_NAMES
    limit = threshold_text(threshold)
    return [f"{chosen[0]} (< {limit})", f"{chosen[1]} (>= {limit})"]


CLASS_LABELS: tuple[str, ...] = tuple(class_labels())
"""Label 0 and label 1 as the pages show them."""
