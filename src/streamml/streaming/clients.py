"""The one place Kafka client configs are built (librdkafka's dotted keys) and topics are created."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from streamml.config import KafkaSettings
from streamml.errors import TransientError

logger = logging.getLogger(__name__)


SCRAM = "SCRAM-SHA-512"
PLAIN = "PLAIN"  # the admin's second mechanism: its password is in the broker's config, so it works before any
# SCRAM account exists (the stack's setup and health check use it; see streamml.streaming.acl)


def connection_config(kafka: KafkaSettings, mechanism: str = SCRAM) -> dict[str, Any]:
    """Where the broker is and who signs in: every client authenticates (SASL; the listener is loopback or the
    Compose network, without TLS)."""
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": kafka.user,
        "sasl.password": kafka.password.get_secret_value(),
    }


def admin_config(kafka: KafkaSettings, mechanism: str = SCRAM) -> dict[str, Any]:
    return connection_config(kafka, mechanism)


def producer_config(kafka: KafkaSettings, client_id: str = "streamml") -> dict[str, Any]:
    """An idempotent producer: acks=all, retries without duplicates or reordering."""
    return {
        **connection_config(kafka),
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
    }


def consumer_config(kafka: KafkaSettings, group_id: str, client_id: str = "streamml") -> dict[str, Any]:
    """A consumer whose offsets are stored and committed by our code only after outputs are flushed.

    Groups use Kafka 4's consumer group protocol (KIP-848): the broker assigns partitions and a member that joins
    or leaves moves only the partitions it takes or gives up, while every other member keeps consuming."""
    return {
        **connection_config(kafka),
        "group.id": group_id,
        "group.protocol": "consumer",
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }


def partition_lag(low: int, high: int, committed: int | None) -> int:
    """Messages of a partition a group has yet to consume: the end offset minus its committed offset, or the whole
    retained log (``high - low``) when it has committed nothing (``None`` or librdkafka's negative sentinel)."""
    done = committed if committed is not None and committed >= 0 else low
    return max(0, high - done)


def ensure_topics(
    kafka: KafkaSettings,
    topics: Iterable[str],
    partitions: int | None = None,
    timeout: float = 30.0,
    mechanism: str = SCRAM,
) -> list[str]:
    """Create the topics that do not exist yet (idempotent); return the ones created."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(admin_config(kafka, mechanism))
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise TransientError(f"Kafka at {kafka.bootstrap_servers} is unreachable: {exc}") from exc
    wanted = [t for t in dict.fromkeys(topics) if t not in existing]
    if not wanted:
        return []
    new = [
        NewTopic(t, num_partitions=partitions or kafka.partitions, config={"retention.ms": str(kafka.retention_ms)})
        for t in wanted
    ]
    created = []
    for topic, future in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(topic)
            logger.info("created topic=%s", topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TransientError(f"could not create topic {topic}: {exc}") from exc
    return created
