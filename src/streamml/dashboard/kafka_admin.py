"""The Kafka page's source: topics, end offsets, consumer groups and their lag, and the latest messages of a topic,
through Kafka's admin API and a consumer that only peeks.

A broker that does not answer raises :class:`~streamml.dashboard.errors.ServiceDown` (KafkaError's own message).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from streamml import names
from streamml.config import KafkaSettings
from streamml.dashboard.errors import ServiceDown
from streamml.streaming.clients import admin_config, consumer_config, partition_lag

CONNECT_TIMEOUT_MS = 3000  # a page says "Kafka is down" within seconds instead of librdkafka's default 30 s


@dataclass(frozen=True)
class GroupInfo:
    group_id: str
    state: str


def admin_client(kafka: KafkaSettings) -> Any:
    """An AdminClient with a short connection timeout."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({**admin_config(kafka), "socket.connection.setup.timeout.ms": CONNECT_TIMEOUT_MS})


def peek_consumer(kafka: KafkaSettings) -> Any:
    """A consumer for reading a topic's tail: it is only ever assigned partitions and never commits."""
    from confluent_kafka import Consumer

    config = consumer_config(kafka, names.GROUP_DASHBOARD_PEEK, client_id="streamml-dashboard")
    return Consumer({**config, "socket.connection.setup.timeout.ms": CONNECT_TIMEOUT_MS})


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
            rows.append(
                {
                    "group": group.group_id,
                    "state": group.state,
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "committed": tp.offset if tp.offset >= 0 else None,
                    "end": high,
                    "lag": partition_lag(low, high, tp.offset),
                }
            )
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["group", "topic", "partition"]).reset_index(drop=True) if rows else frame


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
