"""Stand-ins for the unit tests of the streaming handlers: a Kafka message as the handlers and the worker see it, and
the few Redis calls the metrics store makes (pipelined RPUSH/LTRIM/SET, LRANGE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE

from streamml import names


@dataclass
class Msg:
    payload: bytes | None
    partition_: int = 0
    offset_: int = 0
    topic_: str = names.TOPIC_REQUESTS
    timestamp_ms: int | None = None  # None: the record has no timestamp

    def timestamp(self) -> tuple[int, int]:
        if self.timestamp_ms is None:
            return TIMESTAMP_NOT_AVAILABLE, -1
        return TIMESTAMP_CREATE_TIME, self.timestamp_ms

    def value(self) -> bytes | None:
        return self.payload

    def key(self) -> bytes:
        return b"k"

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def error(self) -> None:
        return None


class FakePipeline:
    def __init__(self, store: dict[str, Any]) -> None:
        self.store = store

    def rpush(self, key: str, *values: str) -> None:
        self.store.setdefault(key, []).extend(values)

    def ltrim(self, *_: object) -> None:
        pass

    def set(self, key: str, value: str) -> None:
        self.store[key] = value

    def execute(self) -> None:
        pass


class FakeRedis:
    def __init__(self) -> None:
        self.store: dict[str, Any] = {}

    def pipeline(self, transaction: bool) -> FakePipeline:  # noqa: ARG002 - redis-py's signature
        return FakePipeline(self.store)

    def lrange(self, key: str, *_: object) -> list[str]:
        return list(self.store.get(key, []))
