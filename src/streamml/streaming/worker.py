"""The one reusable consume loop. A handler turns a batch of messages into outputs; the worker knows no business.

Order per batch: produce outputs and dead letters, write Redis (the handler's sink), flush the producer, then commit
the batch's offsets. An infrastructure fault on the way (Redis or the broker down: the handler's reads, the sink, the
flush, the commit) is retried with backoff, so a restart of Redis or of the broker is ridden out without losing or
skipping a message. If it lasts longer than the retries, nothing is committed and the process exits non-zero, so the
batch is consumed again after the supervisor restarts it (at least once; result keys derive from request ids, so a
replayed batch overwrites rather than duplicates).
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

from streamml.errors import StreamMLError, TransientError

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


class WorkerObserver(Protocol):
    """What a worker reports as it runs (Prometheus metrics implement it); called on the worker's thread."""

    def retried(self, what: str) -> None: ...

    def consumer_error(self) -> None: ...

    def batch_done(self, consumed: int, result: BatchResult, seconds: float) -> None: ...


def retry(
    what: str,
    fn: Callable[[], Any],
    attempts: int = 8,
    base_delay: float = 0.2,
    max_delay: float = 5.0,
    on_retry: Callable[[str], None] | None = None,
) -> Any:
    """Call ``fn``, retrying :class:`TransientError` with exponential backoff; re-raise after the last attempt."""
    delay = base_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except TransientError as exc:
            if attempt == attempts:
                raise
            logger.warning("%s failed (attempt %d/%d), retrying in %.1fs: %s", what, attempt, attempts, delay, exc)
            if on_retry is not None:
                on_retry(what)
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
    return None  # unreachable


# Commit errors that retrying cannot fix: the group moved on (a rebalance, or the coordinator forgot this member
# while the broker was away). Skipping the commit is safe: the next batch's commit covers these offsets, or the
# partition's new owner consumes them again (at least once).
_STALE_MEMBER = frozenset({"ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "REBALANCE_IN_PROGRESS", "_ASSIGNMENT_LOST"})


class Worker:
    """Consume ``topics`` in micro-batches, run ``handler``, deliver its results, then commit."""

    def __init__(
        self,
        consumer: Any,
        producer: Any,
        topics: Sequence[str],
        handler: Handler,
        batch_size: int = 500,
        poll_timeout: float = 0.005,  # a partial batch waits at most this long (bench: p50 41 -> 15 ms at 1k/s)
        on_idle: Callable[[], None] | None = None,
        observer: WorkerObserver | None = None,
        retry_attempts: int = 12,
        flush_timeout: float = 10.0,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.topics = list(topics)
        self.handler = handler
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.on_idle = on_idle
        self.observer = observer
        # 12 attempts back off 0.2, 0.4, ... 5 s: about 40 s of waiting (flushes: 12 waits of flush_timeout), so a
        # restart of Redis or of the broker is ridden out inside max.poll.interval.ms (300 s).
        self.retry_attempts = retry_attempts
        self.flush_timeout = flush_timeout
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

    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        on_retry = self.observer.retried if self.observer is not None else None
        return retry(what, fn, attempts=self.retry_attempts, on_retry=on_retry)

    def _flush(self) -> None:
        """Wait until every produced message is acknowledged. A broker that is away keeps them queued (librdkafka
        resends them until ``message.timeout.ms``), so waiting again is the retry, and each wait is its own backoff.
        A message that failed for good cannot be resent from here: raise, so that the batch is not committed."""
        for attempt in range(1, self.retry_attempts + 1):
            remaining = self.producer.flush(self.flush_timeout)
            if self._delivery_errors:
                errors, self._delivery_errors = self._delivery_errors, []
                raise _Undeliverable(f"{len(errors)} message(s) failed delivery: {errors[:3]}")
            if not remaining:
                return
            if attempt < self.retry_attempts:
                logger.warning("%d message(s) not delivered yet (attempt %d), waiting again", remaining, attempt)
                if self.observer is not None:
                    self.observer.retried("delivery")
        raise TransientError(f"{remaining} message(s) undelivered after {self.retry_attempts} flushes")

    def _commit(self, offsets: list[Any]) -> None:
        from confluent_kafka import KafkaException

        try:
            self.consumer.commit(asynchronous=False, offsets=offsets)
        except KafkaException as exc:
            error: Any = exc.args[0] if exc.args else None
            name = error.name() if error is not None and hasattr(error, "name") else str(exc)
            if name in _STALE_MEMBER:
                logger.warning(
                    "commit skipped (%s); these offsets are committed by the next batch or redelivered", name
                )
                return
            raise TransientError(f"commit failed: {exc}") from exc

    def process(self, messages: Sequence[Any]) -> None:
        """Handle one batch and deliver it; raise :class:`TransientError` if anything was not delivered."""
        started = time.perf_counter()
        data = [m for m in messages if m.error() is None]
        for m in messages:
            if m.error() is not None:
                logger.warning("consumer error topic=%s: %s", m.topic(), m.error())
                if self.observer is not None:
                    self.observer.consumer_error()
        result: BatchResult = self._retry("handler", lambda: self.handler(data))
        for out in result.outputs:
            while True:
                try:
                    self.producer.produce(out.topic, key=out.key, value=out.value, on_delivery=self._on_delivery)
                    break
                except BufferError:  # local queue full: serve delivery callbacks, then try again
                    self.producer.poll(0.1)
            self.producer.poll(0)
        if result.sink is not None:
            self._retry("sink", result.sink)
        self._flush()
        if data:
            self._retry("commit", lambda: self._commit(_next_offsets(data)))
        if self.observer is not None and (data or result.outputs):
            self.observer.batch_done(len(data), result, time.perf_counter() - started)

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


class _Undeliverable(StreamMLError):
    """Produced messages failed for good. Not a TransientError on purpose: flushing again would not resend them,
    so the batch must not be committed; the process exits and the batch is consumed again after the restart."""


def _next_offsets(messages: Sequence[Any]) -> list[Any]:
    """The offset to commit per partition: one past the highest offset of the batch."""
    from confluent_kafka import TopicPartition

    highest: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic(), m.partition())
        highest[key] = max(highest.get(key, -1), m.offset())
    return [TopicPartition(t, p, o + 1) for (t, p), o in highest.items()]
