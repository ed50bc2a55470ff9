"""The live metrics in Redis (``metrics:*``): what the metrics aggregator publishes and the dashboard reads."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from streamml import names
from streamml.errors import TransientError

logger = logging.getLogger(__name__)

RECENT_LIMIT = 100
HISTORY_LIMIT = 2000


class RedisMetricsStore:
    """``metrics:latest``, ``metrics:history``, ``metrics:abs_errors``, ``metrics:recent``, and the feature updater's
    ``metrics:applied_latency_ms``."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def publish(
        self,
        errors: Sequence[float],
        recent: Sequence[str],
        error_window: int,
        snapshot: str | None = None,
        *,
        history: str | None = None,
        drift: str | None = None,
    ) -> None:
        """Append joined events' absolute errors and JSON rows (trimmed), and the snapshot when given (to the history
        as ``history`` when that is given: a smaller copy), and the drift document, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        if errors:
            pipe.rpush(names.METRICS_ERRORS, *[f"{e:.6f}" for e in errors])
            pipe.ltrim(names.METRICS_ERRORS, -error_window, -1)
        if recent:
            pipe.rpush(names.METRICS_RECENT, *recent[-RECENT_LIMIT:])
            pipe.ltrim(names.METRICS_RECENT, -RECENT_LIMIT, -1)
        if snapshot is not None:
            pipe.set(names.METRICS_LATEST, snapshot)
            pipe.rpush(names.METRICS_HISTORY, history or snapshot)
            pipe.ltrim(names.METRICS_HISTORY, -HISTORY_LIMIT, -1)
        if drift is not None:
            pipe.set(names.METRICS_DRIFT, drift)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise TransientError(f"Redis write of metrics failed: {exc}") from exc

    def read_live(self, history_limit: int, recent_limit: int) -> tuple[Any, list[Any], list[Any], list[Any], Any]:
        """``metrics:latest``, the last ``history_limit`` snapshots, the error window, the last ``recent_limit``
        joined rows and ``feat:current``, in one round trip (raw values)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(names.METRICS_LATEST)
        pipe.lrange(names.METRICS_HISTORY, -history_limit, -1)
        pipe.lrange(names.METRICS_ERRORS, 0, -1)
        pipe.lrange(names.METRICS_RECENT, -recent_limit, -1)
        pipe.get(names.FEATURE_VERSION_CURRENT)
        latest, history, errors, recent, feature_version = pipe.execute()
        return latest, history, errors, recent, feature_version

    def latest(self, key: str = names.METRICS_LATEST) -> bytes | str | None:
        """``metrics:latest`` (the last snapshot's JSON; or another ``key``, e.g. ``metrics:drift``), or None."""
        try:
            raw: bytes | str | None = self.client.get(key)
        except redis.RedisError as exc:
            raise TransientError(f"Redis read of {key} failed: {exc}") from exc
        return raw

    def applied_latencies_ms(self) -> list[float]:
        """The feature updater's latest feedback-to-applied latencies, in milliseconds."""
        try:
            raw: list[Any] = self.client.lrange(names.METRICS_APPLIED_LATENCY, 0, -1)
        except redis.RedisError as exc:
            raise TransientError(f"Redis read of {names.METRICS_APPLIED_LATENCY} failed: {exc}") from exc
        return [float(v) for v in raw]
