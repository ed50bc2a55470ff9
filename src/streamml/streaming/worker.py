"""The one reusable consume loop. A handler turns a batch of messages into outputs; the worker knows no business.

Order per batch: produce outputs and dead letters, write Redis (the handler's sink), flush the producer, commit the
batch's offsets, then run the handler's ``committed`` callback if the commit went through (the archive deletes its
intent markers there). An infrastructure fault on the way (Redis or the broker down: the handler's reads, the sink,
the flush, the commit) is retried with backoff, so a restart of Redis or of the broker is ridden out without losing
or skipping a message. If it lasts longer than the retries, nothing is committed and the process exits non-zero, so
the batch is consumed again after the supervisor restarts it (at least once; result keys derive from request ids, so
a replayed batch overwrites rather than duplicates).

Anything else a handler raises is a message's fault, not the infrastructure's: the worker halves the batch until it
finds the message, dead-letters it (reason ``handler_error``) and delivers the rest, so no message can make a consumer
exit, let alone twice for the same offset.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from streamml import names
from streamml.errors import PoisonMessageError, StreamMLError, TransientError
from streamml.streaming.messages import DeadLetter, Message, parse

logger = logging.getLogger(__name__)


@dataclass
class Output:
    topic: str
    key: bytes | str | None
    value: bytes


@dataclass
class BatchResult:
    """What a handler wants done for one batch: messages to produce, a sink write to run before the commit, the
    reason label of each dead letter among the outputs (observers count them once the batch is delivered), and a
    callback to run once the batch's offsets are committed (not when the commit is skipped or fails)."""

    outputs: list[Output] = field(default_factory=list)
    sink: Callable[[], object] | None = None
    refused: list[str] = field(default_factory=list)
    committed: Callable[[], object] | None = None

    def refuse(self, msg: Any, error: PoisonMessageError, topic: str) -> None:
        """Add a dead letter for ``msg``."""
        self.outputs.append(dead_letter(msg, error, topic))
        self.refused.append(error.reason)


def dead_letter(msg: Any, error: PoisonMessageError, topic: str = names.TOPIC_REQUESTS_DLQ) -> Output:
    """The DLQ record of a message that can never be processed: where it came from, why, and its payload."""
    payload = msg.value() or b""
    record = DeadLetter(
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        reason=error.reason,
        error_type=type(error).__name__,
        error=str(error)[:1000],
        payload=payload[:2048].decode("utf-8", errors="replace"),
    )
    return Output(topic, msg.key(), record.encode())


M = TypeVar("M", bound=Message)


def parse_batch(model: type[M], messages: Sequence[Any], result: BatchResult, dlq_topic: str) -> list[tuple[Any, M]]:
    """Decode a batch: each valid message with its Kafka message; a dead letter in ``result`` for every other."""
    valid: list[tuple[Any, M]] = []
    for msg in messages:
        try:
            valid.append((msg, cast(M, parse(model, msg.value()))))
        except PoisonMessageError as exc:
            result.refuse(msg, exc, dlq_topic)
    return valid


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
            of = f"/{attempts}" if attempts < sys.maxsize else ""  # sys.maxsize: retried until it works
            logger.warning("%s failed (attempt %d%s), retrying in %.1fs: %s", what, attempt, of, delay, exc)
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
        poll_timeout: float = 0.0,
        idle_timeout: float = 0.5,
        on_idle: Callable[[], None] | None = None,
        observer: WorkerObserver | None = None,
        retry_attempts: int = 12,
        flush_timeout: float = 10.0,
        dlq_topic: str = names.TOPIC_REQUESTS_DLQ,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.topics = list(topics)
        self.handler = handler
        self.batch_size = batch_size
        # A batch starts with the first message there (the loop blocks up to idle_timeout for it: no busy polling
        # while idle), then takes what else has arrived, waiting up to poll_timeout for the batch to fill (0: never;
        # under load the queue fills while the previous batch is handled, so batches grow with the rate).
        self.poll_timeout = poll_timeout
        self.idle_timeout = idle_timeout
        self.on_idle = on_idle
        self.observer = observer
        # 12 attempts back off 0.2, 0.4, ... 5 s: about 40 s of waiting (flushes: 12 waits of flush_timeout), so a
        # restart of Redis or of the broker is ridden out inside max.poll.interval.ms (300 s).
        self.retry_attempts = retry_attempts
        self.flush_timeout = flush_timeout
        self.dlq_topic = dlq_topic
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

    def _commit(self, offsets: list[Any]) -> bool:
        """Commit ``offsets``; False when the commit was skipped because the group moved on."""
        from confluent_kafka import KafkaException

        try:
            self.consumer.commit(asynchronous=False, offsets=offsets)
            return True
        except KafkaException as exc:
            error: Any = exc.args[0] if exc.args else None
            name = error.name() if error is not None and hasattr(error, "name") else str(exc)
            if name in _STALE_MEMBER:
                logger.warning(
                    "commit skipped (%s); these offsets are committed by the next batch or redelivered", name
                )
                return False
            raise TransientError(f"commit failed: {exc}") from exc

    def _handle(self, messages: Sequence[Any]) -> BatchResult:
        """Run the handler; if it fails for a reason other than an infrastructure fault (a bug a message
        triggers), find the messages that make it fail by halving the batch, dead-letter them with the reason
        ``handler_error`` and handle the rest, so that no message can stop the partition or restart the process."""
        try:
            return self.handler(messages)
        except TransientError:
            raise
        except Exception as exc:  # noqa: BLE001 - isolated below, never swallowed: the culprit goes to the DLQ
            if len(messages) <= 1:
                if not messages:
                    raise
                msg = messages[0]
                logger.exception(
                    "handler failed on one message topic=%s partition=%s offset=%s; dead-lettering it",
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                )
                result = BatchResult()
                result.refuse(msg, PoisonMessageError(f"{type(exc).__name__}: {exc}", "handler_error"), self.dlq_topic)
                return result
            logger.warning("handler failed on a batch of %d (%s); isolating the message", len(messages), exc)
            # Each half is delivered to its sink before the next half is handled: a handler that reads state in
            # Redis and writes it in its sink (the feature updater) must see the first half's writes.
            parts = []
            for part_messages in (messages[: len(messages) // 2], messages[len(messages) // 2 :]):
                part = self._handle(part_messages)
                if part.sink is not None:
                    self._retry("sink", part.sink)
                    part.sink = None
                parts.append(part)
            return _merge(*parts)

    def process(self, messages: Sequence[Any]) -> None:
        """Handle one batch and deliver it; raise :class:`TransientError` if anything was not delivered."""
        started = time.perf_counter()
        data = [m for m in messages if m.error() is None]
        for m in messages:
            if m.error() is not None:
                logger.warning("consumer error topic=%s: %s", m.topic(), m.error())
                if self.observer is not None:
                    self.observer.consumer_error()
        result: BatchResult = self._retry("handler", lambda: self._handle(data))
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
        if data and self._retry("commit", lambda: self._commit(_next_offsets(data))) and result.committed is not None:
            result.committed()
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
                messages = self.consumer.consume(num_messages=1, timeout=self.idle_timeout)
                if not messages:
                    if self.on_idle is not None:
                        self.on_idle()
                    continue
                if self.batch_size > 1:
                    messages += self.consumer.consume(num_messages=self.batch_size - 1, timeout=self.poll_timeout)
                self.process(messages)
        finally:
            self.producer.flush(10)
            self.consumer.close()


def _merge(first: BatchResult, second: BatchResult) -> BatchResult:
    """Both results as one (their sinks already ran; their commit callbacks run in turn), of the more specific of
    their two types: lists are joined, counts added."""
    target = type(first) if isinstance(first, type(second)) else type(second)
    values: dict[str, Any] = {}
    for f in fields(target):
        if f.name not in ("sink", "committed"):
            empty: Any = f.default_factory() if f.default_factory is not MISSING else f.default
            values[f.name] = getattr(first, f.name, empty) + getattr(second, f.name, empty)
    merged = target(**values)
    callbacks = [c for c in (first.committed, second.committed) if c is not None]
    if callbacks:
        merged.committed = lambda: [c() for c in callbacks]
    return merged


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
