from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer

from streamml.config import Settings
from streamml.streaming.clients import consumer_config, ensure_topics, producer_config

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def test_produce_then_consume_on_a_fresh_topic(settings: Settings, require: Callable[[str], None], uid: str) -> None:
    require("kafka")
    topic = f"test.roundtrip.{uid}"
    assert ensure_topics(settings.kafka, [topic], partitions=3) == [topic]
    assert ensure_topics(settings.kafka, [topic]) == []  # idempotent

    producer = Producer(producer_config(settings.kafka))
    delivered: list[str] = []
    for i in range(300):
        producer.produce(topic, key=str(i % 7), value=f"v{i}", on_delivery=lambda e, _m: delivered.append(str(e)))
        producer.poll(0)
    assert producer.flush(30) == 0
    assert delivered == ["None"] * 300

    consumer = Consumer(consumer_config(settings.kafka, group_id=f"test-{uid}"))
    consumer.subscribe([topic])
    seen: set[str] = set()
    try:
        for _ in range(60):
            for msg in consumer.consume(num_messages=200, timeout=1.0):
                assert msg.error() is None
                seen.add(msg.value().decode())
                consumer.store_offsets(msg)
            if len(seen) == 300:
                break
        consumer.commit(asynchronous=False)
        committed = consumer.committed(consumer.assignment(), timeout=10)
    finally:
        consumer.close()
    assert seen == {f"v{i}" for i in range(300)}
    assert sum(max(tp.offset, 0) for tp in committed) == 300  # -1001: partition with nothing committed
