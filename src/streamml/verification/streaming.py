"""End-to-end proof against a running stack, also while a replay is in flight: fresh requests get predictions on the
topic and in Redis; each prediction's score is what the registered model (loaded through ``mlflow.pyfunc``, not the
scorer's fast path) gives for the feature vector it served, and that vector is what the feature definition gives for
the online states (read by this check, with the globals the prediction records); malformed and hostile events land in
the DLQ with their reason, and scoring goes on.

A replay's feedback changes the online state of the users and movies it touches while this runs: the feature check
compares the predictions whose user and movie state was the same before the requests were sent and after their
predictions arrived, and counts the others apart.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamml import names
from streamml.config import Settings
from streamml.features import packing, spec
from streamml.stores.features import RedisFeatureStore
from streamml.stores.redis_client import redis_client
from streamml.streaming.messages import DeadLetter, Prediction, RatingRequest

logger = logging.getLogger(__name__)

MALFORMED: tuple[tuple[bytes, str], ...] = (
    (b"{not json", "invalid_json"),
    (b'{"request_id": "only-an-id"}', "invalid_fields"),
    (b'{"user_id": "seven"}', "invalid_fields"),
    (b"[]", "invalid_fields"),
    # Valid-looking requests out of bounds: an event time past int64, a NaN send time.
    (
        b'{"schema_version":1,"request_id":"x","user_id":1,"movie_id":1,"event_ts":9223372036854775808,"sent_at":1}',
        "out_of_range",
    ),
    (b'{"schema_version":1,"request_id":"x","user_id":1,"movie_id":1,"event_ts":1,"sent_at":NaN}', "out_of_range"),
)
"""Events the scorer must refuse, each with the reason it must give."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def tail_consumer(settings: Settings, topic: str) -> Any:
    """A consumer positioned at the current end of ``topic`` (so it sees only what we produce next)."""
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    from streamml.streaming.clients import consumer_config

    consumer = Consumer(consumer_config(settings.kafka, f"streamml-verify-{uuid.uuid4().hex[:8]}"))
    meta = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in meta.topics[topic].partitions])
    consumer.consume(1, 1.0)  # resolve the end offsets now, before anything we wait for is produced
    return consumer


def run(
    settings: Settings, n: int = 200, timeout: float = 60.0, say: Callable[[str], None] = logger.info
) -> list[Check]:
    from confluent_kafka import Producer

    from streamml.features.batch import read_part
    from streamml.streaming.clients import ensure_topics, producer_config

    checks: list[Check] = []
    store = RedisFeatureStore(redis_client(settings.redis))
    version = store.current_version()
    if version is None:
        return [Check("feature version", False, "no feat:current; run movielens_training")]
    from streamml.models.registry import champion_version

    if champion_version(settings) is None:  # the scorer would wait for one, and every check would time out
        fix = f"run ./run.sh deploy, or streamml pipelines trigger {names.DAG_TRAINING} --wait"
        return [Check("a model to score with", False, f"no @{names.ALIAS_CHAMPION} of {names.MODEL_NAME} yet; {fix}")]
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
    predictions_tail = tail_consumer(settings, names.TOPIC_PREDICTIONS)
    dlq_tail = tail_consumer(settings, names.TOPIC_REQUESTS_DLQ)
    producer = Producer(producer_config(settings.kafka, client_id="streamml-verify"))
    before = _states(store, version, requests)
    say(f"producing {len(requests)} requests and {len(MALFORMED)} malformed or out-of-range events")
    for request in requests:
        request = request.model_copy(update={"sent_at": time.time()})
        producer.produce(names.TOPIC_REQUESTS, key=str(request.user_id), value=request.encode())
        producer.poll(0)
    marker = f"verify-{run_id}".encode()
    for payload, _ in MALFORMED:
        producer.produce(names.TOPIC_REQUESTS, key=marker, value=payload)
    producer.flush(30)

    wanted = {r.request_id for r in requests}
    seen: dict[str, Prediction] = {}
    visible_at: dict[str, float] = {}
    dead: list[DeadLetter] = []
    deadline = time.monotonic() + timeout
    while (len(seen) < len(wanted) or len(dead) < len(MALFORMED)) and time.monotonic() < deadline:
        for msg in predictions_tail.consume(500, 0.2):
            if msg.error() is None:
                p = Prediction.model_validate_json(msg.value())
                if p.request_id in wanted:
                    seen[p.request_id] = p
        for msg in dlq_tail.consume(100, 0.05):
            if msg.error() is None and msg.key() == marker:
                dead.append(DeadLetter.model_validate_json(msg.value()))
        pending = [rid for rid in seen if rid not in visible_at]
        if pending:
            now = time.time()
            for rid, value in zip(pending, store.read_predictions(pending), strict=True):
                if value is not None:
                    visible_at[rid] = now
    predictions_tail.close()
    dlq_tail.close()
    after = _states(store, version, requests)

    checks.append(
        Check("every request predicted on predictions.v1", len(seen) == len(wanted), f"{len(seen)}/{len(wanted)}")
    )
    checks.append(
        Check("every prediction visible in Redis", len(visible_at) == len(wanted), f"{len(visible_at)}/{len(wanted)}")
    )
    reasons = sorted(d.reason for d in dead)
    expected = sorted(reason for _, reason in MALFORMED)
    checks.append(
        Check(
            "malformed and out-of-range events in the DLQ with their reason",
            reasons == expected,
            f"{len(dead)}/{len(MALFORMED)}: {', '.join(reasons) or 'none'}",
        )
    )
    if seen:
        predictions = list(seen.values())
        checks.append(check_scores(settings, predictions))
        checks.append(check_features(predictions, before, after))
        latency = np.array([(p.scored_at - p.sent_at) * 1000 for p in predictions])
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


States = dict[tuple[str, int], bytes | None]


def _states(store: RedisFeatureStore, version: int, requests: Sequence[RatingRequest]) -> States:
    """The user and movie blobs of ``requests`` as they are now, in one read."""
    users = sorted({r.user_id for r in requests})
    movies = sorted({r.movie_id for r in requests})
    blobs = store.get_many(version, users, movies)
    return {**{("user", u): b for u, b in zip(users, blobs, strict=False)},
            **{("movie", m): b for m, b in zip(movies, blobs[len(users) :], strict=False)}}  # fmt: skip


def pyfunc_scores(settings: Settings, model_name: str, model_version: str, features: np.ndarray) -> np.ndarray:
    """Scores of ``features`` by the registered model version, loaded and called the way any MLflow user does (once
    its signature holds: see streamml.models.integrity)."""
    import mlflow
    import pandas as pd

    from streamml.models.integrity import verified_copy

    key = settings.mlflow.signing_key.get_secret_value()
    with verified_copy(settings.mlflow.tracking_uri, model_name, model_version, key) as local:
        model = mlflow.pyfunc.load_model(str(local))
    out = model.predict(pd.DataFrame(features, columns=list(spec.FEATURE_NAMES)))
    return np.asarray(out, dtype=np.float64).reshape(len(features))


def check_scores(settings: Settings, predictions: Sequence[Prediction]) -> Check:
    """Each served vector scored again by the registered model through ``mlflow.pyfunc``."""
    worst = 0.0
    by_version: dict[tuple[str, str], list[Prediction]] = {}
    for p in predictions:
        by_version.setdefault((p.model_name, p.model_version), []).append(p)
    for (name, version), preds in by_version.items():
        offline = pyfunc_scores(settings, name, version, np.array([p.features for p in preds]))
        worst = max(worst, float(np.max(np.abs(offline - np.array([p.score for p in preds])))))
    versions = ", ".join(sorted(v for _, v in by_version))
    return Check(
        "scores equal the registered model (mlflow.pyfunc) on the served features",
        worst <= 1e-9,
        f"max |diff| {worst:.2e}, model v{versions}",
    )


def check_features(predictions: Sequence[Prediction], before: States, after: States) -> Check:
    """Each served vector against the feature definition on the user's and movie's state (unchanged while this ran)
    and the globals the prediction records; predictions whose state feedback changed meanwhile are counted apart."""
    compared = changed = mismatched = 0
    worst = 0.0
    for p in predictions:
        user, movie = ("user", p.user_id), ("movie", p.movie_id)
        if before[user] != after[user] or before[movie] != after[movie]:
            changed += 1
            continue
        user_blob, movie_blob = after[user], after[movie]
        expected, _ = spec.features_from_states(
            packing.unpack_user(user_blob) if user_blob is not None else None,
            packing.unpack_movie(movie_blob) if movie_blob is not None else None,
            spec.GlobalState(*p.globals_used),
            p.event_ts,
        )
        diff = float(np.max(np.abs(np.array(expected) - np.array(p.features))))
        worst = max(worst, diff)
        compared += 1
        mismatched += diff > 1e-9
    return Check(
        "served features equal the feature definition on the online state",
        mismatched == 0 and compared > 0,
        f"{compared} compared, {mismatched} differ (max |diff| {worst:.2e}); {changed} skipped: their user or movie "
        "changed by feedback while this ran",
    )
