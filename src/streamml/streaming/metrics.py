"""The metrics aggregator: joins predictions with feedback by request id and publishes live quality and speed.

While the scorer shadow-scores a challenger, the aggregator also joins each shadow score with its request's feedback
and its champion score, and keeps both models' rolling AUC and log loss over the same requests (``shadow`` of the
snapshot): the promotion gate's online evidence.

State is bounded: unjoined predictions and feedback wait at most ``join_ttl`` seconds (feedback that never comes
expires). Per joined event it records ``|label - score|``; every ``publish_every`` seconds it computes rolling AUC,
accuracy, log loss and MAE over the last ``window`` joined events, throughput, end-to-end latency percentiles, the DLQ
count and the scorer's consumer lag, and writes them to ``metrics.v1``, Redis ``metrics:*`` and an append-only metric
log that a restart continues.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from streamml import names
from streamml.errors import PoisonMessageError
from streamml.features.spec import FEATURE_NAMES, LIKE_THRESHOLD, NO_PREVIOUS_RATING
from streamml.stores.metrics import RedisMetricsStore
from streamml.streaming.messages import Feedback, Message, Prediction, ShadowPrediction, parse
from streamml.streaming.monitor import DriftMonitor, RetrainTrigger
from streamml.streaming.worker import BatchResult, Output

logger = logging.getLogger(__name__)

SINCE_PREVIOUS = FEATURE_NAMES.index("seconds_since_user_prev_rating")
STALE_HISTORY = 64  # feedback event times kept per user
QUALITY_WINDOW = 5000  # joined predictions behind the rolling quality and staleness (the dashboard labels say so)
LATENCY_WINDOW = 5000  # scored predictions behind the latency percentiles
PUBLISH_SECONDS = 2.0  # between two snapshots; the throughput is what was scored in between
SHADOW_IDLE_SECONDS = 60.0  # without a shadow score for this long, joins stop waiting for theirs
LOG_HEADER = "id,y_true,y_pred,absolute_error,model_version,latency_ms,event_ts\n"


class ShadowSnapshot(Message):
    """Champion and challenger on the same joined requests: since this pair of versions began, and over the window."""

    champion_version: str
    challenger_version: str
    paired_total: int
    window: int
    last_at: float
    champion_auc: float | None
    challenger_auc: float | None
    champion_log_loss: float | None
    challenger_log_loss: float | None
    likes: int = 0  # joined requests in the window whose rating was a like (the rest were not)


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
    applied_p50_ms: float | None = None
    applied_p99_ms: float | None = None
    stale_share: float | None = None
    stale_mean: float | None = None
    refused_total: int = 0
    shadow: ShadowSnapshot | None = None
    drift: dict[str, Any] | None = None  # the drift report without its histograms, its alarms, the last retrain


@dataclass
class Joined:
    request_id: str
    y_true: int
    y_pred: float
    model_version: str
    latency_ms: float
    event_ts: int
    stale: int = 0

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
        "accuracy": float(np.mean((y_pred >= names.DECISION_THRESHOLD) == (y_true == 1))),
        "log_loss": float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))),
        "mae": float(np.mean(np.abs(y_true - y_pred))),
    }


@dataclass
class MetricsState:
    """The join and the rolling window; pure, so it is unit-tested without Kafka or Redis."""

    window: int = QUALITY_WINDOW
    join_ttl: float = 3600.0
    max_pending: int = 200_000
    predictions: OrderedDict[str, tuple[float, Prediction]] = field(default_factory=OrderedDict)
    feedback: OrderedDict[str, tuple[float, Feedback]] = field(default_factory=OrderedDict)
    recent: deque[Joined] = field(default_factory=deque)
    joined_total: int = 0
    expired_total: int = 0
    dlq_total: int = 0
    scored_since_publish: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    model_version: str | None = None
    refused_total: int = 0
    # Event times of each user's latest feedback, to count the ratings a prediction was scored without (staleness).
    user_feedback: OrderedDict[int, deque[int]] = field(default_factory=OrderedDict)
    max_users: int = 100_000
    # Shadow scores waiting for their request's join, and joins waiting for their shadow score (once shadows flow).
    shadows: OrderedDict[str, tuple[float, ShadowPrediction]] = field(default_factory=OrderedDict)
    awaiting_shadow: OrderedDict[str, tuple[float, int, float, str]] = field(default_factory=OrderedDict)
    paired: deque[tuple[int, float, float]] = field(default_factory=deque)  # label, champion, challenger scores
    pair: tuple[str, str] | None = None  # (champion, challenger) versions of ``paired``
    paired_total: int = 0
    shadow_at: float | None = None  # when the last pair was joined
    shadow_seen: float = -math.inf  # when the last shadow score arrived
    drift: DriftMonitor | None = None

    def add_prediction(self, p: Prediction, now: float) -> Joined | None:
        self.scored_since_publish += 1
        self.latencies.append((p.scored_at - p.sent_at) * 1000.0)
        self.model_version = p.model_version
        if self.drift is not None:
            self.drift.observe(p.features, p.score, p.model_version)
        fb = self.feedback.pop(p.request_id, None)
        if fb is not None:
            return self._join(p, fb[1], now)
        self.predictions[p.request_id] = (now, p)
        return None

    def add_feedback(self, f: Feedback, now: float) -> Joined | None:
        seen = self.user_feedback.get(f.user_id)
        if seen is None:
            seen = self.user_feedback[f.user_id] = deque(maxlen=STALE_HISTORY)
            if len(self.user_feedback) > self.max_users:
                self.user_feedback.popitem(last=False)
        else:
            self.user_feedback.move_to_end(f.user_id)
        seen.append(f.event_ts)
        pred = self.predictions.pop(f.request_id, None)
        if pred is not None:
            return self._join(pred[1], f, now)
        self.feedback[f.request_id] = (now, f)
        return None

    def stale(self, p: Prediction) -> int:
        """How many of the user's ratings strictly earlier than ``p`` were not applied when ``p`` was scored: those
        later than the last rating its features saw (the updater applies ratings in event-time order). By the time
        ``p`` joins its own feedback, every earlier rating of the user has arrived (one partition per user)."""
        since = p.features[SINCE_PREVIOUS]
        served_last = p.event_ts - since if since != NO_PREVIOUS_RATING else -1
        return sum(served_last < ts < p.event_ts for ts in self.user_feedback.get(p.user_id, ()))

    def add_shadow(self, s: ShadowPrediction, now: float) -> None:
        self.shadow_seen = now
        waiting = self.awaiting_shadow.pop(s.request_id, None)
        if waiting is None:
            self.shadows[s.request_id] = (now, s)
        else:
            _, y_true, champion_score, champion_version = waiting
            self._pair(y_true, champion_score, champion_version, s, now)

    def _pair(self, y_true: int, champion_score: float, champion_version: str, s: ShadowPrediction, now: float) -> None:
        if s.champion_version != champion_version:  # not the same request scoring (a redelivery across a promotion)
            return
        pair = (champion_version, s.model_version)
        if pair != self.pair:
            self.pair, self.paired_total = pair, 0
            self.paired.clear()
        self.paired.append((y_true, champion_score, s.score))
        while len(self.paired) > self.window:
            self.paired.popleft()
        self.paired_total += 1
        self.shadow_at = now

    def _join(self, p: Prediction, f: Feedback, now: float) -> Joined:
        joined = Joined(
            p.request_id,
            int(f.rating >= LIKE_THRESHOLD),
            p.score,
            p.model_version,
            (p.scored_at - p.sent_at) * 1000.0,
            p.event_ts,
            self.stale(p),
        )
        self.recent.append(joined)
        while len(self.recent) > self.window:
            self.recent.popleft()
        self.joined_total += 1
        if self.drift is not None:
            self.drift.joined(p.features, joined.y_true, p.score, p.model_version)
        shadow = self.shadows.pop(p.request_id, None)
        if shadow is not None:
            self._pair(joined.y_true, p.score, p.model_version, shadow[1], now)
        elif now - self.shadow_seen < SHADOW_IDLE_SECONDS:  # shadows flow: this request's may still come
            self.awaiting_shadow[p.request_id] = (now, joined.y_true, p.score, p.model_version)
        return joined

    def expire(self, now: float) -> None:
        pendings: tuple[OrderedDict[str, Any], ...] = (
            self.predictions,
            self.feedback,
            self.shadows,
            self.awaiting_shadow,
        )
        for pending in pendings:
            while pending and (
                now - next(iter(pending.values()))[0] > self.join_ttl or len(pending) > self.max_pending
            ):
                pending.popitem(last=False)
                self.expired_total += 1

    def snapshot(
        self, now: float, elapsed: float, lag: dict[str, int], applied_ms: Sequence[float] = ()
    ) -> MetricsSnapshot:
        y_true = np.array([j.y_true for j in self.recent], dtype=np.float64)
        y_pred = np.array([j.y_pred for j in self.recent], dtype=np.float64)
        stale = np.array([j.stale for j in self.recent], dtype=np.float64)
        lat = np.array(self.latencies) if self.latencies else None
        applied = np.asarray(applied_ms, dtype=np.float64)
        snap = MetricsSnapshot(
            at=now,
            joined_total=self.joined_total,
            window=len(self.recent),
            **rolling_metrics(y_true, y_pred),  # type: ignore[arg-type]
            throughput_per_s=self.scored_since_publish / elapsed if elapsed > 0 else 0.0,
            latency_p50_ms=float(np.percentile(lat, 50)) if lat is not None else None,
            latency_p99_ms=float(np.percentile(lat, 99)) if lat is not None else None,
            dlq_total=self.dlq_total,
            expired_total=self.expired_total,
            lag=lag,
            model_version=self.model_version,
            applied_p50_ms=float(np.percentile(applied, 50)) if len(applied) else None,
            applied_p99_ms=float(np.percentile(applied, 99)) if len(applied) else None,
            stale_share=float(np.mean(stale > 0)) if len(stale) else None,
            stale_mean=float(np.mean(stale)) if len(stale) else None,
            refused_total=self.refused_total,
            shadow=self.shadow_snapshot(),
        )
        self.scored_since_publish = 0
        return snap

    def shadow_snapshot(self) -> ShadowSnapshot | None:
        if self.pair is None or not self.paired or self.shadow_at is None:
            return None
        y_true, champion, challenger = (np.array(column, dtype=np.float64) for column in zip(*self.paired, strict=True))
        ours, theirs = rolling_metrics(y_true, champion), rolling_metrics(y_true, challenger)
        return ShadowSnapshot(
            champion_version=self.pair[0],
            challenger_version=self.pair[1],
            paired_total=self.paired_total,
            window=len(self.paired),
            last_at=self.shadow_at,
            champion_auc=ours["auc"],
            challenger_auc=theirs["auc"],
            champion_log_loss=ours["log_loss"],
            challenger_log_loss=theirs["log_loss"],
            likes=int(y_true.sum()),
        )


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
    """Consumes predictions, feedback and the DLQ; publishes a :class:`MetricsSnapshot` every few seconds.

    A prediction that cannot be read (it breaks the message bounds: a forged or corrupt record) goes to the DLQ with
    its reason; unreadable feedback is only counted (``refused_total``), since the feature updater, which consumes the
    same feedback, dead-letters it already."""

    def __init__(
        self,
        store: RedisMetricsStore,
        log: MetricLog,
        lag: Callable[[], dict[str, int]],
        state: MetricsState | None = None,
        publish_every: float = PUBLISH_SECONDS,
        metrics_topic: str = names.TOPIC_METRICS,
        feedback_topic: str = names.TOPIC_FEEDBACK,
        dlq_topic: str = names.TOPIC_REQUESTS_DLQ,
        shadow_topic: str = names.TOPIC_PREDICTIONS_SHADOW,
        clock: Callable[[], float] = time.time,
        on_snapshot: Callable[[MetricsSnapshot], None] | None = None,
        retrain: RetrainTrigger | None = None,
    ) -> None:
        self.on_snapshot = on_snapshot
        self.retrain = retrain
        self.store = store
        self.log = log
        self.lag = lag
        self.state = state or MetricsState()
        self.publish_every = publish_every
        self.metrics_topic = metrics_topic
        self.feedback_topic = feedback_topic
        self.dlq_topic = dlq_topic
        self.shadow_topic = shadow_topic
        self.clock = clock
        self._last_publish = clock()

    def __call__(self, messages: Sequence[Any]) -> BatchResult:
        now = self.clock()
        result = BatchResult()
        joined: list[Joined] = []
        for msg in messages:
            topic = msg.topic()
            if topic == self.dlq_topic:
                self.state.dlq_total += 1
                continue
            try:
                if topic == self.feedback_topic:
                    j = self.state.add_feedback(cast(Feedback, parse(Feedback, msg.value())), now)
                elif topic == self.shadow_topic:
                    self.state.add_shadow(cast(ShadowPrediction, parse(ShadowPrediction, msg.value())), now)
                    continue
                else:
                    j = self.state.add_prediction(cast(Prediction, parse(Prediction, msg.value())), now)
            except PoisonMessageError as exc:
                self.state.refused_total += 1
                if topic != self.feedback_topic:
                    result.refuse(msg, exc, self.dlq_topic)
                continue
            if j is not None:
                joined.append(j)
        self.state.expire(now)
        snapshot: str | None = None
        history: str | None = None
        drift: str | None = None
        if now - self._last_publish >= self.publish_every:
            snap = self.state.snapshot(now, now - self._last_publish, self.lag(), self.store.applied_latencies_ms())
            self._last_publish = now
            history = snap.model_dump_json()  # the history stays small: no drift report in it
            full = self._assess_drift(now)
            if full is not None:
                compact = {k: v for k, v in full.items() if k not in ("histograms", "score_histogram")}
                snap = snap.model_copy(update={"drift": compact})
                drift = json.dumps({"at": now, "model_version": snap.model_version, "drift": full})
            snapshot = snap.model_dump_json()
            if self.on_snapshot is not None:
                self.on_snapshot(snap)
            result.outputs.append(Output(self.metrics_topic, b"metrics", snapshot.encode()))

        logged = False

        def write() -> None:
            nonlocal logged
            self.store.publish(
                [j.absolute_error for j in joined],
                [json.dumps(j.__dict__) for j in joined],
                self.state.window,
                snapshot,
                history=history,
                drift=drift,
            )
            if not logged:  # a retried write must not log the same rows twice
                self.log.append(joined)
                logged = True

        result.sink = write
        return result

    def _assess_drift(self, now: float) -> dict[str, Any] | None:
        """Assess the drift window; on an alarm, trigger retraining. The report with its alarms and the last
        retrain, JSON-ready, or None without a report (no reference profile yet)."""
        monitor = self.state.drift
        if monitor is None:
            return None
        event = monitor.assess(now)
        if event is not None:
            logger.warning("drift alarm %s: %s", event, "; ".join(monitor.report.reasons if monitor.report else []))
        last = self.retrain(monitor.alarms.active, now) if self.retrain is not None else None
        if monitor.report is None:
            return None
        return {**monitor.report.model_dump(mode="json"), "alarms": monitor.alarms.entries(), "retrain": last}
