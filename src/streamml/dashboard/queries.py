"""Everything the dashboard reads and sends, as plain data: Redis ``metrics:*`` for the Live page, Kafka's admin API
for the Kafka page, the platform API for Models, Pipelines and Predict.

Functions take a client and return dataclasses or small pandas frames ready for a chart or a table; they never
import Streamlit, so they are unit-tested with small fakes. A service that does not answer raises
:class:`ServiceDown` (a person-readable reason), an API that answers with an error raises :class:`ApiError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd

from streamml import names
from streamml.config import KafkaSettings, Settings
from streamml.errors import StreamMLError
from streamml.streaming.clients import admin_config, consumer_config
from streamml.streaming.metrics import MetricsSnapshot

CLASS_NAMES = ("dislike (< 4)", "like (>= 4)")
FINISHED_STATES = frozenset({"success", "failed"})
QUALITY_METRICS = ("auc", "accuracy", "mae")
TASK_DONE_STATES = frozenset({"success", "skipped", "upstream_failed", "failed", "removed"})


class ServiceDown(StreamMLError):
    """A service the dashboard reads did not answer; ``str()`` says which and why, for the page to show."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service} is not reachable: {reason}")
        self.service = service
        self.reason = reason


class ApiError(StreamMLError):
    """The API answered with an error status; ``detail`` is its ``{"detail": ...}``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"the API answered {status}: {detail}")
        self.status = status
        self.detail = detail


# ---------------------------------------------------------------------------------------------------------------
# Live: Redis metrics:*
# ---------------------------------------------------------------------------------------------------------------


def redis_for_dashboard(url: str) -> Any:
    """A Redis client with short timeouts, so a page says "Redis is down" within seconds instead of hanging."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=2)


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
    trip."""
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


HISTORY_COLUMNS = (
    "time", "auc", "accuracy", "mae", "log_loss", "throughput_per_s", "latency_p50_ms", "latency_p99_ms",
    "dlq_total", "lag_total", "joined_total", "window", "model_version",
)  # fmt: skip


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


RECENT_COLUMNS = ("request_id", "model_version", "y_pred", "y_true", "absolute_error", "latency_ms", "event_time")


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


def lag_frame(lag: Mapping[str, int]) -> pd.DataFrame:
    """``partition, lag`` sorted by partition number."""
    items = sorted(((int(p), int(v)) for p, v in lag.items()), key=lambda x: x[0])
    return pd.DataFrame({"partition": [str(p) for p, _ in items], "lag": [v for _, v in items]})


# ---------------------------------------------------------------------------------------------------------------
# Kafka: topics, offsets, consumer groups, latest messages
# ---------------------------------------------------------------------------------------------------------------


def kafka_admin(kafka: KafkaSettings) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({**admin_config(kafka), "socket.connection.setup.timeout.ms": 3000})


def _kafka_down(exc: BaseException) -> ServiceDown:
    text = getattr(exc.args[0], "str", None) if exc.args else None  # KafkaError.str(): the message alone
    reason = str(text()) if callable(text) else str(exc)
    return ServiceDown("Kafka", reason or type(exc).__name__)


def check_port(service: str, host: str, port: int, timeout: float = 1.0) -> None:
    """Raise :class:`ServiceDown` at once when nothing listens on ``host:port``. librdkafka would otherwise retry
    a refused connection until its timeout, keeping a page busy for seconds on every refresh."""
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ServiceDown(service, f"nothing answers on {host}:{port} ({exc.strerror or exc})") from exc


def list_topics(admin: Any, include_internal: bool = False, timeout: float = 5.0) -> list[str]:
    """Topic names, the platform's first (in their usual order), then the rest alphabetically."""
    from confluent_kafka import KafkaException

    try:
        topics = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise _kafka_down(exc) from exc
    platform = [t for t in names.TOPICS if t in topics]
    others = sorted(t for t in topics - set(platform) if include_internal or not t.startswith("__"))
    return platform + others


def topic_offsets(admin: Any, topics: Sequence[str], timeout: float = 5.0) -> pd.DataFrame:
    """``topic, partition, earliest, latest, messages`` for every partition of ``topics``."""
    from confluent_kafka import KafkaException, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    columns = ["topic", "partition", "earliest", "latest", "messages"]
    if not topics:
        return pd.DataFrame(columns=columns)
    try:
        meta = admin.list_topics(timeout=timeout)
        parts = [TopicPartition(t, p) for t in topics if t in meta.topics for p in sorted(meta.topics[t].partitions)]
        if not parts:
            return pd.DataFrame(columns=columns)
        earliest = admin.list_offsets({tp: OffsetSpec.earliest() for tp in parts}, request_timeout=timeout)
        latest = admin.list_offsets({tp: OffsetSpec.latest() for tp in parts}, request_timeout=timeout)
        low = {(tp.topic, tp.partition): fut.result(timeout).offset for tp, fut in earliest.items()}
        high = {(tp.topic, tp.partition): fut.result(timeout).offset for tp, fut in latest.items()}
    except KafkaException as exc:
        raise _kafka_down(exc) from exc
    rows = [
        {
            "topic": tp.topic,
            "partition": tp.partition,
            "earliest": low[(tp.topic, tp.partition)],
            "latest": high[(tp.topic, tp.partition)],
            "messages": high[(tp.topic, tp.partition)] - low[(tp.topic, tp.partition)],
        }
        for tp in parts
    ]
    return pd.DataFrame(rows, columns=columns)


def topic_summary(offsets: pd.DataFrame) -> pd.DataFrame:
    """One row per topic: ``topic, partitions, messages, end_offsets`` (the latest offset of each partition)."""
    if offsets.empty:
        return pd.DataFrame(columns=["topic", "partitions", "messages", "end_offsets"])
    order = list(dict.fromkeys(offsets["topic"]))
    grouped = offsets.groupby("topic", sort=False)
    summary = pd.DataFrame(
        {
            "partitions": grouped["partition"].count(),
            "messages": grouped["messages"].sum(),
            "end_offsets": grouped.apply(
                lambda g: ", ".join(f"{p}:{o}" for p, o in zip(g["partition"], g["latest"], strict=True)),
                include_groups=False,
            ),
        }
    )
    return summary.loc[order].reset_index()


@dataclass(frozen=True)
class GroupInfo:
    group_id: str
    state: str


def consumer_groups(admin: Any, include_tests: bool = False, timeout: float = 5.0) -> list[GroupInfo]:
    """Consumer groups, the platform's first; test groups (``test-*``, the verifier's) only when asked."""
    from confluent_kafka import KafkaException

    try:
        result = admin.list_consumer_groups(request_timeout=timeout).result(timeout)
    except KafkaException as exc:
        raise _kafka_down(exc) from exc
    groups = [GroupInfo(g.group_id, _state_name(g.state)) for g in result.valid]
    if not include_tests:
        groups = [
            g for g in groups if g.group_id.startswith("streamml-") and not g.group_id.startswith("streamml-verify")
        ]
    return sorted(groups, key=lambda g: (not g.group_id.startswith("streamml-"), g.group_id))


def _state_name(state: Any) -> str:
    name = getattr(state, "name", None)
    return str(name if name is not None else state).lower()


def group_lag(admin: Any, groups: Sequence[GroupInfo], offsets: pd.DataFrame, timeout: float = 5.0) -> pd.DataFrame:
    """``group, state, topic, partition, committed, end, lag`` for every partition a group has committed on;
    ``offsets`` (from :func:`topic_offsets`) gives the end offsets. A partition without a commit has the whole
    retained log as lag."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException

    columns = ["group", "state", "topic", "partition", "committed", "end", "lag"]
    ends = {(r.topic, int(r.partition)): (int(r.earliest), int(r.latest)) for r in offsets.itertuples()}
    rows = []
    for group in groups:
        try:
            futures = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group.group_id)], request_timeout=timeout
            )
            committed = next(iter(futures.values())).result(timeout)
        except KafkaException as exc:
            raise _kafka_down(exc) from exc
        for tp in committed.topic_partitions or []:
            if (tp.topic, tp.partition) not in ends:
                continue
            low, high = ends[(tp.topic, tp.partition)]
            done = tp.offset if tp.offset >= 0 else None
            rows.append(
                {
                    "group": group.group_id,
                    "state": group.state,
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "committed": done,
                    "end": high,
                    "lag": max(0, high - (done if done is not None else low)),
                }
            )
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["group", "topic", "partition"]).reset_index(drop=True) if rows else frame


def peek_consumer(kafka: KafkaSettings) -> Any:
    """A consumer for reading a topic's tail: it is only ever assigned partitions and never commits."""
    from confluent_kafka import Consumer

    config = consumer_config(kafka, "streamml-dashboard-peek", client_id="streamml-dashboard")
    return Consumer({**config, "socket.connection.setup.timeout.ms": 3000})


def latest_messages(
    consumer: Any, topic: str, offsets: pd.DataFrame, n: int = 20, timeout: float = 5.0, max_chars: int = 400
) -> pd.DataFrame:
    """The newest ``n`` messages of ``topic`` across its partitions, newest first: ``partition, offset, time, key,
    value``. ``offsets`` (from :func:`topic_offsets`) says where each partition ends; reading stops at those ends."""
    import time

    from confluent_kafka import KafkaException, TopicPartition

    columns = ["partition", "offset", "time", "key", "value"]
    parts = offsets[(offsets["topic"] == topic) & (offsets["latest"] > offsets["earliest"])]
    targets = {int(r.partition): int(r.latest) for r in parts.itertuples()}
    if not targets:
        return pd.DataFrame(columns=columns)
    starts = {int(r.partition): max(int(r.earliest), int(r.latest) - n) for r in parts.itertuples()}
    rows: list[dict[str, Any]] = []
    try:
        consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
        pending = dict(targets)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error():
                    continue
                p, off = msg.partition(), msg.offset()
                if p in pending and off >= pending[p] - 1:
                    del pending[p]
                if off >= targets.get(p, 0):
                    continue
                _, ts = msg.timestamp()
                rows.append(
                    {
                        "partition": p,
                        "offset": off,
                        "time": datetime.fromtimestamp(ts / 1000, UTC) if ts and ts > 0 else None,
                        "key": _text(msg.key(), 60),
                        "value": _text(msg.value(), max_chars),
                    }
                )
    except KafkaException as exc:
        raise _kafka_down(exc) from exc
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    return frame.sort_values(["time", "offset"], ascending=False, na_position="last").head(n).reset_index(drop=True)


def _text(value: bytes | None, limit: int) -> str:
    if value is None:
        return ""
    text = value.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------------------------
# The platform API: Models, Pipelines, Predict
# ---------------------------------------------------------------------------------------------------------------


def api_base_url(settings: Settings) -> str:
    return (settings.dashboard.api_url or settings.api.base_url).rstrip("/")


@dataclass(frozen=True)
class Readiness:
    ok: bool
    checks: dict[str, str] = field(default_factory=dict)
    down: dict[str, str] = field(default_factory=dict)
    detail: str = ""


class ApiClient:
    """The API calls the dashboard makes. Transport failures raise :class:`ServiceDown`, error answers
    :class:`ApiError`. Mutating calls send ``X-API-Key``."""

    def __init__(
        self, base_url: str, api_key: str, timeout: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    @classmethod
    def from_settings(cls, settings: Settings, timeout: float = 10.0) -> ApiClient:
        return cls(api_base_url(settings), settings.api.api_key.get_secret_value(), timeout)

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, *, mutating: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {"X-API-Key": self._api_key} if mutating else {}
        try:
            return self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceDown(f"The API at {self.base_url}", str(exc) or type(exc).__name__) from exc

    def _json(self, method: str, path: str, *, mutating: bool = False, **kwargs: Any) -> Any:
        resp = self._send(method, path, mutating=mutating, **kwargs)
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, _detail(resp))
        try:
            return resp.json()
        except ValueError as exc:
            raise ApiError(resp.status_code, f"not JSON: {resp.text[:200]}") from exc

    def health(self) -> dict[str, Any]:
        return dict(self._json("GET", "/health"))

    def ready(self) -> Readiness:
        resp = self._send("GET", "/ready")
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code == 200:
            return Readiness(True, checks={k: str(v) for k, v in (body.get("checks") or {}).items()})
        down = body.get("down") if isinstance(body, dict) else None
        return Readiness(
            False,
            down={k: str(v) for k, v in (down or {}).items()},
            detail=str(body.get("detail", resp.text[:200])) if isinstance(body, dict) else resp.text[:200],
        )

    def models(self) -> dict[str, Any]:
        return dict(self._json("GET", "/models"))

    def report(self, version: str | int) -> dict[str, Any]:
        return dict(self._json("GET", f"/report/{version}"))

    def promote(self, version: str | int) -> dict[str, Any]:
        return dict(self._json("POST", f"/models/{version}/promote", mutating=True))

    def rollback(self) -> dict[str, Any]:
        return dict(self._json("POST", "/models/rollback", mutating=True))

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self._json("GET", "/runs", params={"limit": limit})["runs"])

    def datasets_catalog(self) -> dict[str, Any]:
        """``{"snapshots": [...], ...}``: raw snapshots and, when the API lists them, feature versions."""
        return dict(self._json("GET", "/datasets"))

    def pipelines(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/pipelines")["dags"])

    def dag_runs(self, dag_id: str, limit: int = 10) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/pipelines/{dag_id}/runs", params={"limit": limit})["runs"])

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return dict(self._json("POST", f"/pipelines/{dag_id}/trigger", mutating=True, json={"conf": dict(conf or {})}))

    def predict(self, items: Sequence[Mapping[str, int]]) -> list[dict[str, Any]]:
        body = {"items": [dict(i) for i in items]}
        return list(self._json("POST", "/predict", mutating=True, json=body)["predictions"])


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300] or resp.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if detail is None:
        return json.dumps(body)[:300]
    return detail if isinstance(detail, str) else json.dumps(detail)[:300]


# --- Models -------------------------------------------------------------------------------------------------------

PREFERRED_METRICS = (
    "streaming_auc",
    "streaming_log_loss",
    "frozen_auc",
    "frozen_log_loss",
    "streaming_baseline_user_auc",
)


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
                "created": _parse_time(v.get("created")),
                "streaming_auc": _number(metrics.get("streaming_auc")),
                "run_id": v.get("run_id") or "",
            }
        )
    frame = pd.DataFrame(rows, columns=["version", "aliases", "model_type", "created", "streaming_auc", "run_id"])
    if frame.empty:
        return frame
    return frame.sort_values("version", key=lambda s: s.map(_version_key), ascending=False).reset_index(drop=True)


def compare_versions(models: Mapping[str, Any], versions: Sequence[str] | None = None) -> pd.DataFrame:
    """Metrics side by side: one row per metric (the gate's first), one column per version labelled
    ``v3 (champion)``."""
    chosen = [v for v in models.get("versions", []) if versions is None or str(v["version"]) in versions]
    chosen.sort(key=lambda v: _version_key(str(v["version"])), reverse=True)
    metric_names: list[str] = [m for m in PREFERRED_METRICS if any(m in (v.get("metrics") or {}) for v in chosen)]
    metric_names += sorted({m for v in chosen for m in (v.get("metrics") or {})} - set(metric_names))
    data = {}
    for v in chosen:
        label = f"v{v['version']}" + (f" ({', '.join(v['aliases'])})" if v.get("aliases") else "")
        data[label] = [_number((v.get("metrics") or {}).get(m)) for m in metric_names]
    return pd.DataFrame(data, index=pd.Index(metric_names, name="metric"))


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


def class_labels(classes: Sequence[str] | None = None) -> list[str]:
    """Readable class names: the API's ``class_names`` (``dislike``, ``like``) with the threshold added."""
    if not classes or len(classes) != 2:
        return list(CLASS_NAMES)
    return [f"{c} ({'< 4' if i == 0 else '>= 4'})" for i, c in enumerate(classes)]


def classification_frame(report: Mapping[str, Any], classes: Sequence[str] | None = None) -> pd.DataFrame:
    """sklearn's ``classification_report(output_dict=True)`` as a table (one row per class and average)."""
    labels = class_labels(classes)
    raw = list(classes) if classes and len(classes) == 2 else ["0", "1"]
    rename = {"0": labels[0], "1": labels[1], raw[0]: labels[0], raw[1]: labels[1]}
    rows = []
    for name, values in report.items():
        if isinstance(values, Mapping):
            label = rename.get(str(name), str(name))
            rows.append({"class": label, **{k: _number(v) for k, v in values.items()}})
        elif name == "accuracy":
            rows.append({"class": "accuracy", "f1-score": _number(values)})
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
        {mode: [_number(values.get(m)) for m in metric_names] for mode, values in modes.items()},
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
            "start_time": _parse_time(r.get("start_time")),
            "model_type": (r.get("params") or {}).get("model_type", ""),
            "streaming_auc": _number((r.get("metrics") or {}).get("streaming_auc")),
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
            row["created"] = _parse_time(row["created"])
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


# --- Pipelines ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunProgress:
    run_id: str
    state: str
    done: int
    total: int
    tasks: pd.DataFrame  # task_id, state, try_number, start_date, end_date, duration_s

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else (1.0 if self.finished else 0.0)


def run_progress(run: Mapping[str, Any]) -> RunProgress:
    """A DAG run's task states and how many tasks are done."""
    rows = []
    for t in run.get("tasks") or []:
        start, end = _parse_time(t.get("start_date")), _parse_time(t.get("end_date"))
        rows.append(
            {
                "task_id": t["task_id"],
                "state": t.get("state") or "scheduled",
                "try_number": t.get("try_number"),
                "start_date": start,
                "end_date": end,
                "duration_s": (end - start).total_seconds() if start is not None and end is not None else None,
            }
        )
    tasks = pd.DataFrame(rows, columns=["task_id", "state", "try_number", "start_date", "end_date", "duration_s"])
    done = int(tasks["state"].isin(TASK_DONE_STATES).sum()) if not tasks.empty else 0
    return RunProgress(str(run["run_id"]), str(run.get("state") or "queued"), done, len(tasks), tasks)


def dag_runs_table(runs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``run_id, state, start_date, end_date, tasks`` (``3/5 done``), newest first as the API returns them."""
    rows = []
    for run in runs:
        progress = run_progress(run)
        rows.append(
            {
                "run_id": progress.run_id,
                "state": progress.state,
                "start_date": _parse_time(run.get("start_date")),
                "end_date": _parse_time(run.get("end_date")),
                "tasks": f"{progress.done}/{progress.total} done",
            }
        )
    return pd.DataFrame(rows, columns=["run_id", "state", "start_date", "end_date", "tasks"])


def parse_conf(text: str) -> dict[str, Any]:
    """A DAG run conf typed by a person: empty means ``{}``; anything else must be a JSON object."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"conf is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ValueError('conf must be a JSON object, like {"quantile": 0.8}')
    return value


# --- Predict ------------------------------------------------------------------------------------------------------


def parse_pairs(text: str, limit: int = 100) -> list[dict[str, int]]:
    """``user_id, movie_id`` pairs, one a line (comma, space or tab between); blank lines and ``#`` comments are
    ignored. A bad line raises ``ValueError`` naming it."""
    items = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        parts = content.replace(",", " ").split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"line {lineno}: expected two non-negative integers 'user_id, movie_id', got {line!r}")
        items.append({"user_id": int(parts[0]), "movie_id": int(parts[1])})
    if len(items) > limit:
        raise ValueError(f"at most {limit} pairs per request, got {len(items)}")
    return items


PREDICTION_COLUMNS = (
    "user_id", "movie_id", "score", "label", "cold_start", "model_name", "model_version", "feature_version",
)  # fmt: skip


def predictions_frame(predictions: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame([dict(p) for p in predictions])
    for col in PREDICTION_COLUMNS:
        if col not in frame:
            frame[col] = None
    frame = frame[list(PREDICTION_COLUMNS)]
    frame["label"] = frame["label"].map(lambda v: CLASS_NAMES[int(v)] if v in (0, 1) else v)
    return frame


# --- helpers ------------------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _parse_time(value: Any) -> pd.Timestamp | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        # MLflow's epoch milliseconds
        return pd.Timestamp(value / 1000 if value > 1e11 else value, unit="s", tz="UTC")
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)
