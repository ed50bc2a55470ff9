"""A Kafka message as the streaming handlers and the worker see it (``value``, ``key``, ``topic``, ``partition``,
``offset``, ``error``), for unit tests."""

from __future__ import annotations

from dataclasses import dataclass

from streamml import names


@dataclass
class Msg:
    payload: bytes | None
    partition_: int = 0
    offset_: int = 0
    topic_: str = names.TOPIC_REQUESTS

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
