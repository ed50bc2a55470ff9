"""The one reusable consume loop. A handler turns a batch of messages into outputs; the worker knows no business.

Order per batch: produce outputs and dead letters, write Redis (the handler's sink), flush the producer, then commit
the batch's offsets. If anything is undelivered, nothing is committed and the process exits non-zero, so the batch is
consumed again after the supervisor restarts it (at least once; result keys derive from request ids, so a replayed
batch overwrites rather than duplicates).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from streamml.errors import TransientError

logger = logging.getLogger(__name__)


@dataclass
class Output:
    topic: str
    key: bytes | str | None
    value: bytes


@dataclass
class BatchResult:
    """What a handler wants done for one batch: messages to produce and a sink write to run before the commit."""

    outputs: list[Output] = field(default_factory=list)
    sink: Callable[[], object] | None = None


class Handler(Protocol):
    def __call__(self, messages: Sequence[Any]) -> BatchResult: ...


def retry(what: str, fn: Callable[[], Any], attempts: int = 8, base_delay: float = 0.2, max_delay: float = 5.0) -> Any:
    """Call ``fn``, retrying :class:`TransientError` with exponential backoff; re-raise after the last attempt."""
    delay = base_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except TransientError as exc:
            if attempt == attempts:
                raise
            logger.warning("%s failed (attempt %d/%d), retrying in %.1fs: %s", what, attempt, attempts, delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
    return None  # unreachable


class Worker:
    """Consume ``topics`` in micro-batches, run ``handler``, deliver its results, then commit."""

    def __init__(
        self,
        consumer: Any,
        producer: Any,
        topics: Sequence[str],
        handler: Handler,
        batch_size: int = 500,
        poll_timeout: float = 0.05,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.topics = list(topics)
        self.handler = handler
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.on_idle = on_idle
        self.running = True
        self._delivery_errors: list[str] = []

    def stop(self, *_: object) -> None:
        self.running = False

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err}")

    def process(self, messages: Sequence[Any]) -> None:
        """Handle one batch and deliver it; raise :class:`TransientError` if anything was not delivered."""
        data = [m for m in messages if m.error() is None]
        for m in messages:
            if m.error() is not None:
                logger.warning("consumer error topic=%s: %s", m.topic(), m.error())
        result = self.handler(data)
        for out in result.outputs:
            while True:
                try:
                    self.producer.produce(out.topic, key=out.key, value=out.value, on_delivery=self._on_delivery)
                    break
                except BufferError:  # local queue full: serve delivery callbacks, then try again
                    self.producer.poll(0.1)
            self.producer.poll(0)
        if result.sink is not None:
            retry("sink write", result.sink)
        remaining = self.producer.flush(30)
        if remaining or self._delivery_errors:
            errors, self._delivery_errors = self._delivery_errors, []
            raise TransientError(f"{remaining} message(s) undelivered; errors: {errors[:3]}")
        if data:
            self.consumer.commit(asynchronous=False, offsets=_next_offsets(data))

    def run(self) -> None:
        self.consumer.subscribe(self.topics)
        logger.info("consuming topics=%s batch_size=%d", self.topics, self.batch_size)
        # Containers' healthchecks look at this file's age (a wedged loop stops touching it).
        heartbeat = Path(os.environ["STREAMML_HEARTBEAT_FILE"]) if os.environ.get("STREAMML_HEARTBEAT_FILE") else None
        beat = 0.0
        try:
            while self.running:
                if heartbeat is not None and time.monotonic() - beat > 5:
                    heartbeat.touch()
                    beat = time.monotonic()
                messages = self.consumer.consume(num_messages=self.batch_size, timeout=self.poll_timeout)
                if messages:
                    self.process(messages)
                elif self.on_idle is not None:
                    self.on_idle()
        finally:
            self.producer.flush(10)
            self.consumer.close()


def _next_offsets(messages: Sequence[Any]) -> list[Any]:
    """The offset to commit per partition: one past the highest offset of the batch."""
    from confluent_kafka import TopicPartition

    highest: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic(), m.partition())
        highest[key] = max(highest.get(key, -1), m.offset())
    return [TopicPartition(t, p, o + 1) for (t, p), o in highest.items()]
