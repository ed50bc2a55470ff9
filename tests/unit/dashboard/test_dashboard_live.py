"""The Live page's data: what the metrics aggregator writes to Redis, read through a small fake and shaped for the
charts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
import redis

from streamml import names
from streamml.dashboard import frames_live, live_metrics
from streamml.dashboard.errors import ServiceDown
from streamml.names import METRICS_ERRORS, METRICS_HISTORY, METRICS_LATEST, METRICS_RECENT


class FakeRedis:
    """The few commands the Live page uses, over dicts; ``down`` makes every command fail like a dead server."""

    def __init__(self, down: bool = False) -> None:
        self.values: dict[str, bytes] = {}
        self.lists: dict[str, list[bytes]] = {}
        self.down = down

    def get(self, key: str) -> bytes | None:
        self._check()
        return self.values.get(key)

    def lrange(self, key: str, start: int, end: int) -> list[bytes]:
        self._check()
        items = self.lists.get(key, [])
        n = len(items)
        start = max(0, n + start) if start < 0 else start
        end = n + end if end < 0 else end
        return items[start : end + 1]

    def rpush(self, key: str, *values: str) -> None:
        self.lists.setdefault(key, []).extend(v.encode() for v in values)

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    def _check(self) -> None:
        if self.down:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


class FakePipeline:
    def __init__(self, client: FakeRedis) -> None:
        self.client = client
        self.calls: list[Callable[[], Any]] = []

    def get(self, key: str) -> None:
        self.calls.append(lambda: self.client.get(key))

    def lrange(self, key: str, start: int, end: int) -> None:
        self.calls.append(lambda: self.client.lrange(key, start, end))

    def execute(self) -> list[Any]:
        return [call() for call in self.calls]


def snapshot(at: float, **overrides: Any) -> str:
    base = {
        "schema_version": 1, "at": at, "joined_total": 120, "window": 100, "auc": 0.81, "accuracy": 0.74,
        "log_loss": 0.52, "mae": 0.33, "throughput_per_s": 49.5, "latency_p50_ms": 12.0, "latency_p99_ms": 80.0,
        "dlq_total": 3, "expired_total": 0, "lag": {"0": 4, "1": 0, "2": 7}, "model_version": "3",
    }  # fmt: skip
    return json.dumps({**base, **overrides})


def joined(i: int, y_true: int, y_pred: float, version: str = "3") -> str:
    return json.dumps(
        {"request_id": f"r{i}", "y_true": y_true, "y_pred": y_pred, "model_version": version,
         "latency_ms": 10.0 + i, "event_ts": 1_500_000_000 + i}
    )  # fmt: skip


def test_read_live_reads_what_the_aggregator_writes() -> None:
    r = FakeRedis()
    r.values[METRICS_LATEST] = snapshot(1000.0).encode()
    r.values[names.FEATURE_VERSION_CURRENT] = b"2"
    r.rpush(METRICS_HISTORY, snapshot(996.0, auc=None, window=0), "not json", snapshot(998.0), snapshot(1000.0))
    r.rpush(METRICS_ERRORS, "0.100000", "0.900000", "0.450000")
    r.rpush(METRICS_RECENT, joined(1, 1, 0.8), joined(2, 0, 0.3))

    view = live_metrics.read_live(r)

    assert view.snapshot is not None and view.snapshot.auc == pytest.approx(0.81)
    assert view.model_version == "3" and view.feature_version == 2
    assert view.errors == pytest.approx([0.1, 0.9, 0.45])
    assert len(view.history) == 3  # the unreadable entry is skipped
    assert view.history["lag_total"].tolist() == [11, 11, 11]
    assert pd.isna(view.history["auc"].iloc[0]) and view.history["auc"].iloc[-1] == pytest.approx(0.81)
    assert view.recent["request_id"].tolist() == ["r2", "r1"]  # newest first
    assert view.recent["absolute_error"].tolist() == pytest.approx([0.3, 0.2])
    assert view.age_seconds(now=1012.5) == pytest.approx(12.5)


def test_read_live_limits_history_and_recent() -> None:
    r = FakeRedis()
    r.rpush(METRICS_HISTORY, *[snapshot(float(i)) for i in range(50)])
    r.rpush(METRICS_RECENT, *[joined(i, 1, 0.5) for i in range(30)])
    view = live_metrics.read_live(r, history_limit=10, recent_limit=5)
    assert len(view.history) == 10 and view.history["time"].iloc[-1].timestamp() == 49.0
    assert view.recent["request_id"].tolist() == ["r29", "r28", "r27", "r26", "r25"]


def test_model_version_falls_back_to_the_newest_prediction_after_an_aggregator_restart() -> None:
    r = FakeRedis()
    r.values[METRICS_LATEST] = snapshot(5.0, model_version=None, window=0, auc=None).encode()
    r.rpush(METRICS_RECENT, joined(1, 1, 0.9, version="2"), joined(2, 1, 0.9, version="4"))
    view = live_metrics.read_live(r)
    assert view.model_version == "4"
    assert live_metrics.read_live(FakeRedis()).model_version is None


def test_read_live_says_redis_is_down() -> None:
    with pytest.raises(ServiceDown, match="Redis is not reachable: .*Connection refused"):
        live_metrics.read_live(FakeRedis(down=True))


def test_error_histogram_has_fixed_bins_over_zero_to_one() -> None:
    hist = frames_live.error_histogram([0.0, 0.01, 0.049, 0.05, 0.5, 0.999, 1.0, 1.3], bins=20)
    assert len(hist) == 20
    assert hist["bin_start"].iloc[0] == 0.0 and hist["bin_end"].iloc[-1] == 1.0
    assert hist["count"].sum() == 8  # out-of-range errors are clipped into the last bin, never dropped
    assert hist["count"].iloc[0] == 3 and hist["count"].iloc[1] == 1 and hist["count"].iloc[10] == 1
    assert hist["count"].iloc[-1] == 3
    assert frames_live.error_histogram([])["count"].sum() == 0


def test_long_series_drops_missing_values_and_renames() -> None:
    history = frames_live.history_frame([snapshot(1.0, auc=None), snapshot(2.0, auc=0.7, mae=0.2)])
    frame = frames_live.long_series(history, ["auc", "mae"], {"auc": "AUC", "mae": "MAE"})
    assert sorted(zip(frame["series"], frame["value"], strict=True)) == [("AUC", 0.7), ("MAE", 0.2), ("MAE", 0.33)]
    assert frames_live.long_series(frames_live.history_frame([]), ["auc"]).empty


def test_long_series_starts_a_new_segment_after_a_pause() -> None:
    history = frames_live.history_frame([snapshot(t) for t in (0.0, 2.0, 4.0, 100.0, 102.0)])
    frame = frames_live.long_series(history, ["mae"], gap_seconds=30)
    assert frame["segment"].tolist() == [0, 0, 0, 1, 1]


def test_lag_frame_sorts_partitions_numerically() -> None:
    frame = frames_live.lag_frame({"10": 1, "2": 5, "0": 0})
    assert frame["partition"].tolist() == ["0", "2", "10"] and frame["lag"].tolist() == [0, 5, 1]
