"""The Live and Drift pages' source: one read of what the metrics aggregator publishes to Redis (``metrics:*``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from streamml import names
from streamml.dashboard.errors import ServiceDown
from streamml.dashboard.frames_drift import DriftView, drift_view
from streamml.dashboard.frames_live import history_frame, recent_frame
from streamml.streaming.metrics import MetricsSnapshot


@dataclass(frozen=True)
class LiveView:
    """One consistent read of what the metrics aggregator publishes."""

    snapshot: MetricsSnapshot | None
    history: pd.DataFrame  # one row per published snapshot, oldest first
    errors: list[float]  # |label - score| of the last joined events
    recent: pd.DataFrame  # the last joined predictions, newest first
    feature_version: int | None

    @property
    def model_version(self) -> str | None:
        """The version the scorer serves: the latest snapshot's, else the newest joined prediction's."""
        if self.snapshot is not None and self.snapshot.model_version:
            return self.snapshot.model_version
        if not self.recent.empty:
            return str(self.recent["model_version"].iloc[0])
        return None

    def age_seconds(self, now: float) -> float | None:
        return None if self.snapshot is None else max(0.0, now - self.snapshot.at)


def read_live(client: Any, history_limit: int = 720, recent_limit: int = 25) -> LiveView:
    """Read ``metrics:latest``, the last ``history_limit`` snapshots, the error window and recent joins in one round
    trip; a Redis that does not answer raises :class:`ServiceDown`."""
    import redis

    from streamml.stores.metrics import RedisMetricsStore

    try:
        latest, history, errors, recent, feature_version = RedisMetricsStore(client).read_live(
            history_limit, recent_limit
        )
    except redis.RedisError as exc:
        raise ServiceDown("Redis", str(exc) or type(exc).__name__) from exc
    return LiveView(
        snapshot=MetricsSnapshot.model_validate_json(latest) if latest else None,
        history=history_frame(history),
        errors=[float(e) for e in errors],
        recent=recent_frame(recent),
        feature_version=int(feature_version) if feature_version is not None else None,
    )


def read_drift(client: Any) -> DriftView:
    """The drift monitor's report in ``metrics:latest``; a Redis that does not answer raises :class:`ServiceDown`."""
    from streamml.errors import TransientError
    from streamml.stores.metrics import RedisMetricsStore

    try:
        latest = RedisMetricsStore(client).latest(names.METRICS_DRIFT)
    except TransientError as exc:
        raise ServiceDown("Redis", str(exc.__cause__ or exc)) from exc
    return drift_view(latest)
