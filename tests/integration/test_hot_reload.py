"""Hot reload on the real MLflow, Kafka and Redis: a running scorer process shadow-scores @challenger, switches to the
version moved to @champion without a restart (by the MLflow client alone, as the MLflow UI would, and by
registry.promote, which also publishes on the model-events topic), and a champion whose artifacts cannot be loaded
leaves the previous model serving and is reported (log and /metrics).

The model is a small LikeModel logged by the test under a registered name of its own, so the platform's champion and
other tests are never touched; topics, consumer group and Redis database 9 are the test's own too.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import mlflow
import numpy as np
import pytest
import redis
from confluent_kafka import Consumer, Producer
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression
from streaming_fixtures import free_port, load_history_snapshot, movielens_split, scrape, start_scorer

from streamml import names
from streamml.config import Settings
from streamml.features import spec
from streamml.models import registry
from streamml.models.integrity import SIGNATURE_TAG, sign_version
from streamml.models.pyfunc import LikeModel
from streamml.streaming.clients import consumer_config, ensure_topics, producer_config
from streamml.streaming.messages import Prediction, RatingRequest, ShadowPrediction

pytestmark = [
    pytest.mark.integration,
    pytest.mark.mlflow,
    pytest.mark.minio,
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.slow,
]


@pytest.fixture
def registered(settings: Settings, require: Callable[[str], None], uid: str) -> Iterator[dict[str, Any]]:
    """Model ``test-hot-reload-{uid}``: versions 1 and 2 (the same small LikeModel, signed as training signs), 3, whose
    source has no artifacts (a champion that cannot be loaded), and 4, the same model registered by hand without a
    signature (a forged version)."""
    for service in ("mlflow", "minio", "kafka", "redis"):
        require(service)
    tracking = settings.mlflow.tracking_uri
    client = MlflowClient(tracking_uri=tracking)
    mlflow.set_tracking_uri(tracking)
    experiment = mlflow.set_experiment(f"test-hot-reload-{uid}")
    name = f"test-hot-reload-{uid}"
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, spec.N_FEATURES))
    estimator = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    try:
        with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
            info = mlflow.pyfunc.log_model(
                name="model", python_model=LikeModel(estimator), pip_requirements=["scikit-learn"]
            )
        key = settings.mlflow.signing_key.get_secret_value()
        for _ in range(2):
            version = mlflow.register_model(info.model_uri, name).version
            sign_version(client, tracking, name, version, key)
        broken = client.create_model_version(name, source=f"{run.info.artifact_uri}/missing", run_id=run.info.run_id)
        client.set_model_version_tag(name, broken.version, SIGNATURE_TAG, "0" * 64)  # claimed, cannot be checked
        assert broken.version == "3"
        assert mlflow.register_model(info.model_uri, name).version == "4"
        yield {"name": name, "run_id": run.info.run_id}
    finally:
        if client.search_registered_models(f"name='{name}'"):
            client.delete_registered_model(name)
        client.delete_experiment(experiment.experiment_id)


class Traffic:
    """Sends requests to the scorer and reads its predictions, in order of arrival."""

    def __init__(self, settings: Settings, topics: list[str], uid: str) -> None:
        self.producer = Producer(producer_config(settings.kafka))
        self.consumer = Consumer(consumer_config(settings.kafka, f"test-hot-reload-read-{uid}"))
        self.consumer.subscribe([topics[1], f"{topics[1]}.shadow"])
        self.shadow_topic = f"{topics[1]}.shadow"
        self.shadows: list[ShadowPrediction] = []
        self.topic = topics[0]
        self.uid = uid
        self.sent = 0
        self.predictions: list[Prediction] = []
        _, stream, _ = movielens_split()
        self.rows = list(zip(stream.userId, stream.movieId, stream.timestamp, strict=True))[:500]

    def send(self, n: int) -> None:
        for _ in range(n):
            user, movie, ts = self.rows[self.sent % len(self.rows)]
            request = RatingRequest(
                request_id=f"{self.uid}-{self.sent}", user_id=int(user), movie_id=int(movie), event_ts=int(ts),
                sent_at=time.time(),
            )  # fmt: skip
            self.producer.produce(self.topic, key=str(user), value=request.encode())
            self.sent += 1
        assert self.producer.flush(30) == 0

    def read(self, seconds: float = 1.0) -> list[Prediction]:
        messages = [m for m in self.consumer.consume(1000, timeout=seconds) if m.error() is None]
        new = [Prediction.model_validate_json(m.value()) for m in messages if m.topic() != self.shadow_topic]
        self.shadows += [
            ShadowPrediction.model_validate_json(m.value()) for m in messages if m.topic() == self.shadow_topic
        ]
        self.predictions += new
        return new

    def until(self, condition: Callable[[list[Prediction]], bool], scorer: subprocess.Popen[bytes]) -> None:
        """Keep sending a few requests a second until ``condition`` holds on what was read (2 minutes at most)."""
        deadline = time.monotonic() + 120
        while not condition(self.predictions):
            assert time.monotonic() < deadline, "the scorer did not get there in 2 minutes"
            assert scorer.poll() is None, "the scorer exited"
            self.send(5)
            self.read(0.5)

    def close(self) -> None:
        self.consumer.close()


def test_promotion_hot_reloads_and_a_broken_champion_keeps_the_old_model(
    settings: Settings, redis_db: redis.Redis, registered: dict[str, Any], uid: str
) -> None:
    name = registered["name"]
    history, _, movies = movielens_split()
    load_history_snapshot(redis_db, history, movies)
    topics = [f"test.{uid}.{t}" for t in ("requests", "predictions", "dlq", "model-events")]
    ensure_topics(settings.kafka, [*topics, f"{topics[1]}.shadow"], partitions=3)
    registry.promote(settings, 1, model_name=name, topic=topics[3])
    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    client.set_registered_model_alias(name, "challenger", "2")

    port = free_port()
    db = redis_db.connection_pool.connection_kwargs["db"]
    scorer = start_scorer(topics[:3], f"test-hot-reload-{uid}", db, port, champion=(name, topics[3]))
    traffic = Traffic(settings, topics, uid)
    try:
        traffic.until(lambda ps: len(ps) >= 20, scorer)
        assert {p.model_version for p in traffic.predictions} == {"1"}
        before = scrape(port)
        assert before[f'streamml_scorer_model_info{{model_name="{name}",model_version="1"}}'] == 1

        # @challenger 2 is shadow-scored on the same requests; the results stay the champion's.
        traffic.until(lambda _: len(traffic.shadows) >= 20, scorer)
        assert {(s.model_version, s.champion_version) for s in traffic.shadows} == {("2", "1")}
        assert {s.request_id for s in traffic.shadows} <= {f"{uid}-{i}" for i in range(traffic.sent)}
        stored = redis_db.get(names.prediction_key(traffic.shadows[0].request_id))
        assert stored is not None and Prediction.model_validate_json(stored).model_version == "1"

        # Move @champion to version 2 with the MLflow client alone (no model event, as the MLflow UI would): the same
        # process serves it from some batch on, never version 1 again, and stops shadowing (nothing differs).
        client.set_registered_model_alias(name, "champion", "2")
        traffic.until(lambda ps: sum(p.model_version == "2" for p in ps) >= 20, scorer)
        versions = [p.model_version for p in sorted(traffic.predictions, key=lambda p: p.scored_at)]
        first_v2 = versions.index("2")
        assert set(versions[first_v2:]) == {"2"}
        assert versions[:first_v2] and set(versions[:first_v2]) == {"1"}
        assert all(s.champion_version == "1" for s in traffic.shadows)  # nothing is shadowed beside champion 2

        # Promote version 3, whose artifacts are missing: the load fails, version 2 keeps serving, it is reported.
        registry.promote(settings, 3, model_name=name, topic=topics[3])

        def failure_reported(_: list[Prediction]) -> bool:
            return scrape(port).get('streamml_scorer_model_loads_total{outcome="failure"}', 0) >= 1

        traffic.until(failure_reported, scorer)

        # Make the forged version 4 champion straight in MLflow: the scorer refuses to unpickle it, version 2 serves.
        client.set_registered_model_alias(name, "champion", "4")

        def refusal_reported(_: list[Prediction]) -> bool:
            return scrape(port).get('streamml_scorer_model_loads_total{outcome="failure"}', 0) >= 2

        traffic.until(refusal_reported, scorer)
        n_before = len(traffic.predictions)
        traffic.until(lambda ps: len(ps) >= n_before + 20, scorer)
        after = scrape(port)
        assert scorer.poll() is None, "a failed load must not stop the scorer"
    finally:
        traffic.close()
        if scorer.poll() is None:
            scorer.terminate()
            scorer.wait(30)
    assert {p.model_version for p in traffic.predictions[n_before:]} == {"2"}
    assert after[f'streamml_scorer_model_info{{model_name="{name}",model_version="2"}}'] == 1
    assert after["streamml_scorer_model_version"] == 2
    assert after['streamml_scorer_model_loads_total{outcome="success"}'] == 2
    assert after["streamml_scorer_predictions_total"] > before["streamml_scorer_predictions_total"] > 0
    assert after["streamml_scorer_messages_consumed_total"] >= after["streamml_scorer_predictions_total"]
