"""The scorer on the real broker and Redis: every valid request gets exactly one prediction (on the topic and in
Redis) equal to the offline computation; every malformed one lands in the DLQ with its reason; nothing blocks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
import redis
from confluent_kafka import Producer
from streaming_fixtures import drain, load_history_snapshot, movielens_split

from streamml import names
from streamml.config import Settings
from streamml.features import spec
from streamml.stores.features import RedisFeatureStore
from streamml.streaming.clients import consumer_config, ensure_topics, producer_config
from streamml.streaming.messages import DeadLetter, Prediction, RatingRequest
from streamml.streaming.scorer import ScorerHandler, ServingModel
from streamml.streaming.worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.redis]

WEIGHTS = np.linspace(-0.5, 0.5, spec.N_FEATURES)


def row_model(matrix: np.ndarray) -> np.ndarray:
    """A model whose score of a row depends on that row only (so batching cannot change it)."""
    return 1.0 / (1.0 + np.exp(-(np.tanh(matrix / 1000.0) @ WEIGHTS)))


def test_scores_dlq_and_exactly_one_result_per_request(
    settings: Settings, redis_db: redis.Redis, require: Callable[[str], None], uid: str
) -> None:
    require("kafka")
    history, stream, movies = movielens_split()
    offline = load_history_snapshot(redis_db, history, movies)
    requests_topic, predictions_topic, dlq_topic = (f"test.{uid}.{t}" for t in ("requests", "predictions", "dlq"))
    ensure_topics(settings.kafka, [requests_topic, predictions_topic, dlq_topic], partitions=3)

    sample = stream.head(2000)
    producer = Producer(producer_config(settings.kafka))
    bad = [b"{oops", json.dumps({"request_id": "x"}).encode(), b"[]", b"x" * 20_000]
    for i, r in enumerate(sample.itertuples()):
        request = RatingRequest(
            request_id=f"{uid}-{i}", user_id=int(r.userId), movie_id=int(r.movieId), event_ts=int(r.timestamp),
            sent_at=time.time(),
        )  # fmt: skip
        producer.produce(requests_topic, key=str(r.userId), value=request.encode())
        if i % 400 == 0:
            for payload in bad:
                producer.produce(requests_topic, key=b"bad", value=payload)
        producer.poll(0)
    assert producer.flush(30) == 0
    n_bad = len(bad) * len(range(0, len(sample), 400))

    from confluent_kafka import Consumer as KafkaConsumer

    handler = ScorerHandler(
        RedisFeatureStore(redis_db), lambda: ServingModel("test", "1", row_model),
        predictions_topic=predictions_topic, dlq_topic=dlq_topic,
    )  # fmt: skip
    worker = Worker(
        KafkaConsumer(consumer_config(settings.kafka, f"test-scorer-{uid}")), Producer(producer_config(settings.kafka)),
        [requests_topic], handler, batch_size=256,
    )  # fmt: skip
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        predictions = [Prediction.model_validate_json(v) for v in drain(settings, predictions_topic, len(sample), uid)]
        dead = [DeadLetter.model_validate_json(v) for v in drain(settings, dlq_topic, n_bad, uid)]
    finally:
        worker.stop()
        thread.join(30)
    assert sorted(p.request_id for p in predictions) == sorted(f"{uid}-{i}" for i in range(len(sample)))
    assert len(dead) == n_bad
    assert all(d.error and d.topic == requests_topic and d.offset >= 0 for d in dead)
    for p in predictions[:300]:
        expected = row_model(np.array([offline.features(p.user_id, p.movie_id, p.event_ts)]))[0]
        assert p.score == pytest.approx(expected, abs=1e-9)
        stored = Prediction.model_validate_json(redis_db.get(names.prediction_key(p.request_id)))
        assert stored == p
        assert 0 < redis_db.ttl(names.prediction_key(p.request_id)) <= 24 * 3600
