"""``model-events.v1``: what the registry tells scorers when the champion changes, so they hot-reload it."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamml import names
from streamml.config import KafkaSettings
from streamml.errors import PoisonMessageError, TransientError

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Literal[1] = 1


class ModelEvent(BaseModel):
    """A registered model version got (or lost) an alias; keyed by model name, so events of a model stay ordered."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Version of this message's layout.")
    kind: Literal["promoted", "rolled_back"] = Field(description="Why the alias moved.")
    model_name: str = Field(description="Registered model name.")
    version: int = Field(ge=1, description="The version the alias now points to.")
    alias: str = Field(description="The alias that moved, e.g. champion.")
    run_id: str = Field(description="MLflow run that produced the version.")
    previous_version: int | None = Field(None, description="The version the alias pointed to before, if any.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Evaluation metrics of the version.")
    reason: str = Field("", description="The gate's or the operator's reason.")
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC), description="When the alias moved (UTC).")

    @property
    def model_uri(self) -> str:
        """The URI a scorer loads: the exact version, so a later alias move cannot race the reload."""
        return f"models:/{self.model_name}/{self.version}"

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> ModelEvent:
        """Parse a message value; raises :class:`PoisonMessageError` when it is not a valid event."""
        if raw is None:
            raise PoisonMessageError("model event without a value")
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise PoisonMessageError(f"invalid model event: {exc.error_count()} error(s): {exc.errors()[0]}") from exc


def finite_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics that JSON can carry (NaN and infinities dropped)."""
    return {key: float(value) for key, value in metrics.items() if math.isfinite(value)}


def publish(
    kafka: KafkaSettings, event: ModelEvent, topic: str = names.TOPIC_MODEL_EVENTS, timeout: float = 30.0
) -> None:
    """Produce ``event`` on ``topic`` (created if missing) and wait for the broker's ack.

    Raises :class:`TransientError` when the event is not delivered in ``timeout`` seconds.
    """
    from confluent_kafka import KafkaException, Producer

    from streamml.streaming.clients import ensure_topics, producer_config

    ensure_topics(kafka, [topic], timeout=timeout)
    failures: list[str] = []

    def on_delivery(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    producer = Producer(producer_config(kafka, client_id="streamml-registry"))
    try:
        producer.produce(topic, key=event.model_name.encode(), value=event.to_bytes(), on_delivery=on_delivery)
        producer.poll(0)
        undelivered = producer.flush(timeout)
    except (KafkaException, BufferError) as exc:
        raise TransientError(f"could not publish model event on {topic}: {exc}") from exc
    if undelivered or failures:
        raise TransientError(f"model event not delivered on {topic}: {failures or f'{undelivered} pending'}")
    logger.info(
        "published model event topic=%s kind=%s model=%s version=%d alias=%s",
        topic,
        event.kind,
        event.model_name,
        event.version,
        event.alias,
    )
