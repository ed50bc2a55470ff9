"""End-to-end proof against a running stack: fresh requests get predictions on the topic and in Redis, equal to an
offline computation with the same model version and feature values; malformed events land in the DLQ with a reason.

Run it while no replay is in flight: the feature updater changes online features as feedback arrives, and the
offline check recomputes features from what Redis holds when it checks.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamml import names
from streamml.config import Settings
from streamml.features import spec
from streamml.stores.features import RedisFeatureStore, redis_client
from streamml.streaming.messages import DeadLetter, Prediction, RatingRequest

logger = logging.getLogger(__name__)

MALFORMED: tuple[bytes, ...] = (b"{not json", b'{"request_id": "only-an-id"}', b'{"user_id": "seven"}', b"[]")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _tail_consumer(settings: Settings, topic: str) -> object:
    """A consumer positioned at the current end of ``topic`` (so it sees only what we produce next)."""
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    from streamml.streaming.clients import consumer_config

    consumer = Consumer(consumer_config(settings.kafka, f"streamml-verify-{uuid.uuid4().hex[:8]}"))
    meta = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in meta.topics[topic].partitions])
    return consumer


def run(
    settings: Settings, n: int = 200, timeout: float = 60.0, say: Callable[[str], None] = logger.info
) -> list[Check]:
    from confluent_kafka import Producer

    from streamml.features.batch import read_part
    from streamml.streaming.clients import ensure_topics, producer_config

    checks: list[Check] = []
    client = redis_client(settings.redis)
    store = RedisFeatureStore(client)
    version = store.current_version()
    if version is None:
        return [Check("feature version", False, "no feat:current; run movielens_training")]
    ensure_topics(settings.kafka, names.TOPICS)
    stream = read_part(settings, version, "stream", columns=["userId", "movieId", "timestamp"]).to_pydict()
    rng = np.random.default_rng()
    picks = rng.choice(len(stream["userId"]), size=min(n, len(stream["userId"])), replace=False)
    run_id = uuid.uuid4().hex[:8]
    requests = [
        RatingRequest(
            request_id=f"verify-{run_id}-{i}",
            user_id=int(stream["userId"][k]),
            movie_id=int(stream["movieId"][k]),
            event_ts=int(stream["timestamp"][k]),
            sent_at=0.0,
        )
        for i, k in enumerate(picks)
    ]
    predictions_tail = _tail_consumer(settings, names.TOPIC_PREDICTIONS)
    dlq_tail = _tail_consumer(settings, names.TOPIC_REQUESTS_DLQ)
    producer = Producer(producer_config(settings.kafka, client_id="streamml-verify"))
    say(f"producing {len(requests)} requests and {len(MALFORMED)} malformed events")
    for request in requests:
        request = request.model_copy(update={"sent_at": time.time()})
        producer.produce(names.TOPIC_REQUESTS, key=str(request.user_id), value=request.encode())
        producer.poll(0)
    marker = f"verify-{run_id}".encode()
    for payload in MALFORMED:
        producer.produce(names.TOPIC_REQUESTS, key=marker, value=payload)
    producer.flush(30)

    wanted = {r.request_id for r in requests}
    seen: dict[str, Prediction] = {}
    visible_at: dict[str, float] = {}
    dead: list[DeadLetter] = []
    deadline = time.monotonic() + timeout
    while (len(seen) < len(wanted) or len(dead) < len(MALFORMED)) and time.monotonic() < deadline:
        for msg in predictions_tail.consume(500, 0.2):  # type: ignore[attr-defined]
            if msg.error() is None:
                p = Prediction.model_validate_json(msg.value())
                if p.request_id in wanted:
                    seen[p.request_id] = p
        for msg in dlq_tail.consume(100, 0.05):  # type: ignore[attr-defined]
            if msg.error() is None and msg.key() == marker:
                dead.append(DeadLetter.model_validate_json(msg.value()))
        pending = [rid for rid in seen if rid not in visible_at]
        if pending:
            now = time.time()
            for rid, value in zip(pending, client.mget([names.prediction_key(r) for r in pending]), strict=True):
                if value is not None:
                    visible_at[rid] = now
    predictions_tail.close()  # type: ignore[attr-defined]
    dlq_tail.close()  # type: ignore[attr-defined]

    checks.append(
        Check("every request predicted on predictions.v1", len(seen) == len(wanted), f"{len(seen)}/{len(wanted)}")
    )
    checks.append(
        Check("every prediction visible in Redis", len(visible_at) == len(wanted), f"{len(visible_at)}/{len(wanted)}")
    )
    dlq_ok = len(dead) == len(MALFORMED) and all(d.error for d in dead)
    checks.append(Check("malformed events in the DLQ with a reason", dlq_ok, f"{len(dead)}/{len(MALFORMED)}"))
    if seen:
        checks.append(_check_values(settings, store, version, list(seen.values())))
        latency = np.array([(p.scored_at - p.sent_at) * 1000 for p in seen.values()])
        visible = np.array([(visible_at[r] - seen[r].sent_at) * 1000 for r in visible_at]) if visible_at else latency
        checks.append(
            Check(
                "latency (ms)",
                True,
                f"scored p50={np.percentile(latency, 50):.1f} p99={np.percentile(latency, 99):.1f}; "
                f"visible in Redis p50={np.percentile(visible, 50):.1f} p99={np.percentile(visible, 99):.1f}",
            )
        )
    return checks


def offline_scores(
    settings: Settings, store: RedisFeatureStore, version: int, predictions: list[Prediction]
) -> np.ndarray:
    """Each prediction's score recomputed offline: the same model version loaded from the registry, the features
    rebuilt from the same Redis blobs of feature version ``version``."""
    from streamml.models.pyfunc import load_scorer

    out = np.empty(len(predictions))
    by_version: dict[str, list[int]] = {}
    for i, p in enumerate(predictions):
        by_version.setdefault(p.model_version, []).append(i)
    for model_version, rows in by_version.items():
        preds = [predictions[i] for i in rows]
        predict = load_scorer(f"models:/{preds[0].model_name}/{model_version}", settings.mlflow.tracking_uri)
        blobs = store.get_many(version, [p.user_id for p in preds], [p.movie_id for p in preds])
        k = len(preds)
        users = [spec.unpack_user(b) if b else None for b in blobs[:k]]
        movies = [spec.unpack_movie(b) if b else None for b in blobs[k : 2 * k]]
        globals_state = spec.unpack_globals(blobs[-1]) if blobs[-1] else spec.GlobalState()
        matrix = spec.feature_matrix(users, movies, globals_state, np.array([p.event_ts for p in preds]))
        out[rows] = predict(matrix)
    return out


def _check_values(settings: Settings, store: RedisFeatureStore, version: int, predictions: list[Prediction]) -> Check:
    """Recompute each score offline and compare."""
    offline = offline_scores(settings, store, version, predictions)
    worst = float(np.max(np.abs(offline - np.array([p.score for p in predictions])))) if predictions else 0.0
    versions = ", ".join(sorted({p.model_version for p in predictions}))
    return Check("scores equal the offline computation", worst <= 1e-6, f"max |diff| {worst:.2e}, model v{versions}")
