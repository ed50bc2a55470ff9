"""The metrics aggregator: joins predictions with feedback by request id and publishes live quality and speed.

State is bounded: unjoined predictions and feedback wait at most ``join_ttl`` seconds (feedback that never comes
expires). Per joined event it records ``|label - score|``; every ``publish_every`` seconds it computes rolling AUC,
accuracy, log loss and MAE over the last ``window`` joined events, throughput, end-to-end latency percentiles, the DLQ
count and the scorer's consumer lag, and writes them to ``metrics.v1``, Redis ``metrics:*`` and an append-only metric
log that a restart continues.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamml import names
from streamml.errors import PoisonMessageError, TransientError
from streamml.features.spec import LIKE_THRESHOLD
from streamml.streaming.messages import Feedback, Message, Prediction
from streamml.streaming.worker import BatchResult, Output

logger = logging.getLogger(__name__)

METRICS_LATEST = names.METRICS_PREFIX + "latest"
METRICS_HISTORY = names.METRICS_PREFIX + "history"
METRICS_ERRORS = names.METRICS_PREFIX + "abs_errors"
METRICS_RECENT = names.METRICS_PREFIX + "recent"
LOG_HEADER = "id,y_true,y_pred,absolute_error,model_version,latency_ms,event_ts\n"


class MetricsSnapshot(Message):
    at: float
    joined_total: int
    window: int
    auc: float | None
    accuracy: float | None
    log_loss: float | None
    mae: float | None
    throughput_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    dlq_total: int
    expired_total: int
    lag: dict[str, int]
    model_version: str | None


@dataclass
class Joined:
    request_id: str
    y_true: int
    y_pred: float
    model_version: str
    latency_ms: float
    event_ts: int

    @property
    def absolute_error(self) -> float:
        return abs(self.y_true - self.y_pred)


def rolling_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    if len(y_true) == 0:
        return {"auc": None, "accuracy": None, "log_loss": None, "mae": None}
    from sklearn.metrics import roc_auc_score

    p = np.clip(y_pred, 1e-7, 1 - 1e-7)
    both = len(np.unique(y_true)) == 2
    return {
        "auc": float(roc_auc_score(y_true, y_pred)) if both else None,
        "accuracy": float(np.mean((y_pred >= 0.5) == (y_true == 1))),
        "log_loss": float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))),
        "mae": float(np.mean(np.abs(y_true - y_pred))),
    }


@dataclass
class MetricsState:
    """The join and the rolling window; pure, so it is unit-tested without Kafka or Redis."""

    window: int = 5000
    join_ttl: float = 3600.0
    max_pending: int = 200_000
    predictions: OrderedDict[str, tuple[float, Prediction]] = field(default_factory=OrderedDict)
    feedback: OrderedDict[str, tuple[float, Feedback]] = field(default_factory=OrderedDict)
    recent: deque[Joined] = field(default_factory=deque)
    joined_total: int = 0
    expired_total: int = 0
    dlq_total: int = 0
    scored_since_publish: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    model_version: str | None = None

    def add_prediction(self, p: Prediction, now: float) -> Joined | None:
        self.scored_since_publish += 1
        self.latencies.append((p.scored_at - p.sent_at) * 1000.0)
        self.model_version = p.model_version
        fb = self.feedback.pop(p.request_id, None)
        if fb is not None:
            return self._join(p, fb[1])
        self.predictions[p.request_id] = (now, p)
        return None

    def add_feedback(self, f: Feedback, now: float) -> Joined | None:
        pred = self.predictions.pop(f.request_id, None)
        if pred is not None:
            return self._join(pred[1], f)
        self.feedback[f.request_id] = (now, f)
        return None

    def _join(self, p: Prediction, f: Feedback) -> Joined:
        joined = Joined(
            p.request_id,
            int(f.rating >= LIKE_THRESHOLD),
            p.score,
            p.model_version,
            (p.scored_at - p.sent_at) * 1000.0,
            p.event_ts,
        )
        self.recent.append(joined)
        while len(self.recent) > self.window:
            self.recent.popleft()
        self.joined_total += 1
        return joined

    def expire(self, now: float) -> None:
        for pending in (self.predictions, self.feedback):
            while pending and (
                now - next(iter(pending.values()))[0] > self.join_ttl or len(pending) > self.max_pending
            ):
                pending.popitem(last=False)
                self.expired_total += 1

    def snapshot(self, now: float, elapsed: float, lag: dict[str, int]) -> MetricsSnapshot:
        y_true = np.array([j.y_true for j in self.recent], dtype=np.float64)
        y_pred = np.array([j.y_pred for j in self.recent], dtype=np.float64)
        lat = np.array(self.latencies) if self.latencies else None
        snap = MetricsSnapshot(
            at=now,
            joined_total=self.joined_total,
            window=len(self.recent),
            **rolling_metrics(y_true, y_pred),
            throughput_per_s=self.scored_since_publish / elapsed if elapsed > 0 else 0.0,
            latency_p50_ms=float(np.percentile(lat, 50)) if lat is not None else None,
            latency_p99_ms=float(np.percentile(lat, 99)) if lat is not None else None,
            dlq_total=self.dlq_total,
            expired_total=self.expired_total,
            lag=lag,
            model_version=self.model_version,
        )
        self.scored_since_publish = 0
        return snap


class MetricLog:
    """Append-only CSV of joined events; a restart appends to the same file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.stat().st_size == 0:
            path.write_text(LOG_HEADER)

    def append(self, rows: Sequence[Joined]) -> None:
        if not rows:
            return
        with self.path.open("a") as fh:
            fh.writelines(
                f"{j.request_id},{j.y_true},{j.y_pred:.6f},{j.absolute_error:.6f},{j.model_version},"
                f"{j.latency_ms:.2f},{j.event_ts}\n"
                for j in rows
            )
            fh.flush()


class MetricsHandler:
    """Consumes predictions, feedback and the DLQ; publishes a :class:`MetricsSnapshot` every few seconds."""

    def __init__(
        self,
        client: Any,
        log: MetricLog,
        lag: Callable[[], dict[str, int]],
        state: MetricsState | None = None,
        publish_every: float = 2.0,
        metrics_topic: str = names.TOPIC_METRICS,
        feedback_topic: str = names.TOPIC_FEEDBACK,
        dlq_topic: str = names.TOPIC_REQUESTS_DLQ,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.log = log
        self.lag = lag
        self.state = state or MetricsState()
        self.publish_every = publish_every
        self.metrics_topic = metrics_topic
        self.feedback_topic = feedback_topic
        self.dlq_topic = dlq_topic
        self.clock = clock
        self._last_publish = clock()

    def __call__(self, messages: Sequence[Any]) -> BatchResult:
        now = self.clock()
        joined: list[Joined] = []
        for msg in messages:
            topic = msg.topic()
            try:
                if topic == self.dlq_topic:
                    self.state.dlq_total += 1
                elif topic == self.feedback_topic:
                    j = self.state.add_feedback(Feedback.model_validate_json(msg.value() or b""), now)
                    joined += [j] if j else []
                else:
                    j = self.state.add_prediction(Prediction.model_validate_json(msg.value() or b""), now)
                    joined += [j] if j else []
            except (ValueError, PoisonMessageError) as exc:  # pydantic's ValidationError is a ValueError
                logger.warning("skipping unreadable message topic=%s offset=%s: %s", topic, msg.offset(), exc)
        self.state.expire(now)
        outputs: list[Output] = []
        snap: MetricsSnapshot | None = None
        if now - self._last_publish >= self.publish_every:
            snap = self.state.snapshot(now, now - self._last_publish, self.lag())
            self._last_publish = now
            outputs.append(Output(self.metrics_topic, b"metrics", snap.encode()))

        logged = False

        def write() -> None:
            import redis

            nonlocal logged
            pipe = self.client.pipeline(transaction=False)
            if joined:
                pipe.rpush(METRICS_ERRORS, *[f"{j.absolute_error:.6f}" for j in joined])
                pipe.ltrim(METRICS_ERRORS, -self.state.window, -1)
                pipe.rpush(METRICS_RECENT, *[json.dumps(j.__dict__) for j in joined[-100:]])
                pipe.ltrim(METRICS_RECENT, -100, -1)
            if snap is not None:
                pipe.set(METRICS_LATEST, snap.model_dump_json())
                pipe.rpush(METRICS_HISTORY, snap.model_dump_json())
                pipe.ltrim(METRICS_HISTORY, -2000, -1)
            try:
                pipe.execute()
            except redis.RedisError as exc:
                raise TransientError(f"Redis write of metrics failed: {exc}") from exc
            if not logged:  # a retried write must not log the same rows twice
                self.log.append(joined)
                logged = True

        return BatchResult(outputs, sink=write)
