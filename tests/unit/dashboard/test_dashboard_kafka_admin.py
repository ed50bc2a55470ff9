"""The Kafka page's data against small fakes of Kafka's admin API and a consumer."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streamml import names
from streamml.dashboard import kafka_admin
from streamml.dashboard.errors import ServiceDown


def done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


def kafka_down() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._TRANSPORT, "Connection refused"))


class FakeAdmin:
    """Kafka's AdminClient over ``{topic: {partition: (earliest, latest)}}`` and ``{group: {(topic, p): offset}}``."""

    def __init__(
        self,
        topics: dict[str, dict[int, tuple[int, int]]],
        groups: dict[str, dict[tuple[str, int], int]] | None = None,
        down: bool = False,
    ) -> None:
        self.topics = topics
        self.groups = groups or {}
        self.down = down

    def list_topics(self, timeout: float = -1) -> Any:
        if self.down:
            raise kafka_down()
        return SimpleNamespace(
            topics={t: SimpleNamespace(partitions=dict.fromkeys(parts)) for t, parts in self.topics.items()}
        )

    def list_offsets(self, specs: dict[TopicPartition, Any], request_timeout: float = -1) -> dict[Any, Future[Any]]:
        index = 0 if type(specs[next(iter(specs))]).__name__ == "EarliestSpec" else 1
        return {tp: done(SimpleNamespace(offset=self.topics[tp.topic][tp.partition][index])) for tp in specs}

    def list_consumer_groups(self, request_timeout: float = -1) -> Future[Any]:
        valid = [SimpleNamespace(group_id=g, state=SimpleNamespace(name="STABLE")) for g in self.groups]
        return done(SimpleNamespace(valid=valid))

    def list_consumer_group_offsets(self, requests: list[Any], request_timeout: float = -1) -> dict[str, Future[Any]]:
        group = requests[0].group_id
        tps = [TopicPartition(t, p, o) for (t, p), o in self.groups[group].items()]
        return {group: done(SimpleNamespace(group_id=group, topic_partitions=tps))}


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, ts_ms: int, key: bytes, value: bytes) -> None:
        self._t, self._p, self._o, self._ts, self._k, self._v = topic, partition, offset, ts_ms, key, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)

    def key(self) -> bytes:
        return self._k

    def value(self) -> bytes:
        return self._v


class FakeConsumer:
    """Serves the messages of assigned partitions from their assigned offsets, a few per ``consume``."""

    def __init__(self, log: dict[int, list[FakeMessage]]) -> None:
        self.log = log
        self.positions: dict[int, int] = {}
        self.assigned: list[TopicPartition] = []

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = tps
        self.positions = {tp.partition: tp.offset for tp in tps}

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        out = []
        for p, pos in self.positions.items():
            batch = [m for m in self.log[p] if m.offset() >= pos][:2]
            out += batch
            if batch:
                self.positions[p] = batch[-1].offset() + 1
        return out


TOPICS = {
    names.TOPIC_PREDICTIONS: {0: (0, 10), 1: (5, 8)},
    names.TOPIC_REQUESTS: {0: (0, 12), 1: (0, 9)},
    "__consumer_offsets": {0: (0, 3)},
    "test.abc.requests": {0: (0, 1)},
}
GROUPS = {
    names.GROUP_SCORER: {(names.TOPIC_REQUESTS, 0): 12, (names.TOPIC_REQUESTS, 1): 4},
    names.GROUP_METRICS: {(names.TOPIC_PREDICTIONS, 0): 10, (names.TOPIC_PREDICTIONS, 1): -1001},
    "test-scorer-abc": {("test.abc.requests", 0): 1},
}


def test_list_topics_puts_platform_topics_first_and_hides_internal_ones() -> None:
    admin = FakeAdmin(TOPICS)
    assert kafka_admin.list_topics(admin) == [names.TOPIC_REQUESTS, names.TOPIC_PREDICTIONS, "test.abc.requests"]
    assert "__consumer_offsets" in kafka_admin.list_topics(admin, include_internal=True)


def test_topic_offsets_and_summary() -> None:
    offsets = kafka_admin.topic_offsets(FakeAdmin(TOPICS), [names.TOPIC_PREDICTIONS, "missing.topic"])
    assert offsets[["partition", "earliest", "latest", "messages"]].values.tolist() == [[0, 0, 10, 10], [1, 5, 8, 3]]
    summary = kafka_admin.topic_summary(offsets)
    assert summary.to_dict("records") == [
        {"topic": names.TOPIC_PREDICTIONS, "partitions": 2, "messages": 13, "end_offsets": "0:10, 1:8"}
    ]
    assert kafka_admin.topic_offsets(FakeAdmin(TOPICS), []).empty


def test_consumer_groups_and_their_lag() -> None:
    admin = FakeAdmin(TOPICS, GROUPS)
    groups = kafka_admin.consumer_groups(admin)
    assert [g.group_id for g in groups] == [names.GROUP_METRICS, names.GROUP_SCORER]
    assert groups[0].state == "stable"
    assert len(kafka_admin.consumer_groups(admin, include_tests=True)) == 3

    offsets = kafka_admin.topic_offsets(admin, [names.TOPIC_PREDICTIONS, names.TOPIC_REQUESTS])
    lag = kafka_admin.group_lag(admin, groups, offsets)
    rows = {(r.group, r.topic, r.partition): (r.committed, r.end, r.lag) for r in lag.itertuples()}
    assert rows[(names.GROUP_SCORER, names.TOPIC_REQUESTS, 0)] == (12, 12, 0)
    assert rows[(names.GROUP_SCORER, names.TOPIC_REQUESTS, 1)] == (4, 9, 5)
    # no commit yet on partition 1: the whole retained log (8 - 5) is lag
    committed, end, behind = rows[(names.GROUP_METRICS, names.TOPIC_PREDICTIONS, 1)]
    assert pd.isna(committed) and end == 8 and behind == 3


def test_kafka_down_is_a_service_down() -> None:
    admin = FakeAdmin(TOPICS, down=True)
    with pytest.raises(ServiceDown, match="^Kafka is not reachable: Connection refused$"):
        kafka_admin.list_topics(admin)
    with pytest.raises(ServiceDown):
        kafka_admin.topic_offsets(admin, [names.TOPIC_PREDICTIONS])


def test_check_port_fails_fast_when_nothing_listens() -> None:
    import socket

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        kafka_admin.check_port("Kafka", "127.0.0.1", port)  # answers: no error
    with pytest.raises(ServiceDown, match=f"Kafka is not reachable: nothing answers on 127.0.0.1:{port}"):
        kafka_admin.check_port("Kafka", "127.0.0.1", port)


def test_latest_messages_reads_the_newest_across_partitions() -> None:
    topic = names.TOPIC_PREDICTIONS
    log = {
        0: [FakeMessage(topic, 0, o, 1_000_000 + o * 10, b"7", f'{{"n": {o}}}'.encode()) for o in range(10)],
        1: [FakeMessage(topic, 1, o, 1_000_000 + o * 10 + 5, b"8", b"x" * 1000) for o in range(5, 8)],
    }
    consumer = FakeConsumer(log)
    offsets = kafka_admin.topic_offsets(FakeAdmin(TOPICS), [topic])

    latest = kafka_admin.latest_messages(consumer, topic, offsets, n=4, max_chars=50)

    assert {tp.partition: tp.offset for tp in consumer.assigned} == {0: 6, 1: 5}  # never reads more than it needs
    assert list(zip(latest["partition"], latest["offset"], strict=True)) == [(0, 9), (0, 8), (1, 7), (0, 7)]
    assert latest["key"].iloc[0] == "7" and latest["value"].iloc[0] == '{"n": 9}'
    assert len(latest["value"].iloc[2]) == 50 and latest["value"].iloc[2].endswith("…")


def test_latest_messages_of_an_empty_topic() -> None:
    offsets = kafka_admin.topic_offsets(FakeAdmin({"empty": {0: (4, 4)}}), ["empty"])
    assert kafka_admin.latest_messages(FakeConsumer({0: []}), "empty", offsets).empty
