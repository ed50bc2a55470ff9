"""Process runners for the streaming programs (each started by the CLI, supervised in the local stack)."""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from streamml import names
from streamml.config import Settings
from streamml.errors import ModelUnavailableError, TransientError
from streamml.streaming.clients import consumer_config, ensure_topics, partition_lag, producer_config
from streamml.streaming.replayer import Rating
from streamml.streaming.scorer import ServingModel
from streamml.streaming.worker import Handler, Worker, WorkerObserver, retry

logger = logging.getLogger(__name__)


def _worker(
    settings: Settings,
    group: str,
    topic: str | list[str],
    handler: Handler,
    batch_size: int,
    observer: WorkerObserver | None = None,
) -> Worker:
    from confluent_kafka import Consumer, Producer

    retry("topic creation", lambda: ensure_topics(settings.kafka, names.TOPICS))
    consumer = Consumer(consumer_config(settings.kafka, group, client_id=group))
    producer = Producer(producer_config(settings.kafka, client_id=group))
    topics = [topic] if isinstance(topic, str) else topic
    worker = Worker(consumer, producer, topics, handler, batch_size=batch_size, observer=observer)
    worker.install_signal_handlers()
    return worker


@dataclass(frozen=True)
class ScorerTopics:
    """Where a scorer reads and writes (the platform's topics; tests give their own)."""

    requests: str = names.TOPIC_REQUESTS
    predictions: str = names.TOPIC_PREDICTIONS
    dlq: str = names.TOPIC_REQUESTS_DLQ
    model_events: str = names.TOPIC_MODEL_EVENTS


def metrics_host(settings: Settings) -> str:
    """Loopback in the local stack; every interface in a container, where Prometheus scrapes from outside."""
    return "0.0.0.0" if settings.mode == "docker" else "127.0.0.1"  # noqa: S104 - containers publish the port


def run_scorer(
    settings: Settings,
    batch_size: int = 500,
    *,
    topics: ScorerTopics = ScorerTopics(),  # noqa: B008 - frozen, so a shared default is safe
    group: str = names.GROUP_SCORER,
    model_name: str = names.MODEL_NAME,
    model: Callable[[], ServingModel] | None = None,
) -> None:
    """Score ``topics.requests`` with @champion of ``model_name`` (or ``model``, when given) until SIGTERM.

    Prometheus metrics are served on ``settings.scorer.metrics_port`` from the start, also while waiting for a
    first champion.
    """
    from confluent_kafka import Consumer

    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.scorer import ScorerHandler
    from streamml.streaming.serving import ChampionModel
    from streamml.streaming.telemetry import ScorerMetrics, serve_metrics

    metrics = ScorerMetrics()
    serve_metrics(settings.scorer.metrics_port, metrics_host(settings))
    used = [topics.requests, topics.predictions, topics.dlq] + ([topics.model_events] if model is None else [])
    retry("topic creation", lambda: ensure_topics(settings.kafka, used))
    events: Consumer | None = None
    try:
        if model is None:
            # Each scorer process sees every model event: its own group, starting at the end.
            group_id = f"{names.GROUP_SCORER_MODEL_EVENTS}-{uuid.uuid4().hex[:8]}"
            events = Consumer({**consumer_config(settings.kafka, group_id), "auto.offset.reset": "latest"})
            events.subscribe([topics.model_events])
            champion = ChampionModel(
                settings.mlflow.tracking_uri,
                model_name=model_name,
                events=events,
                background=True,
                on_loaded=metrics.model_loaded,
                on_failed=metrics.model_failed,
            )
            # A fresh deploy has no champion until the training DAG promotes one: wait for it, however long.
            retry("loading @champion", _model_ready(champion), attempts=sys.maxsize, max_delay=15.0)
            model = champion
        else:
            metrics.model_loaded(model())
        handler = ScorerHandler(
            RedisFeatureStore(redis_client(settings.redis)),
            model,
            predictions_topic=topics.predictions,
            dlq_topic=topics.dlq,
        )
        _worker(settings, group, topics.requests, handler, batch_size, observer=metrics).run()
    finally:
        if events is not None:
            events.close()


def _model_ready(model: Callable[[], object]) -> Callable[[], object]:
    def load() -> object:
        try:
            return model()
        except ModelUnavailableError as exc:  # no champion yet: wait for the training DAG
            raise TransientError(str(exc)) from exc

    return load


def run_updater(settings: Settings, batch_size: int = 500) -> None:
    """Apply ratings.feedback.v1 to the online features until SIGTERM."""
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.updater import FeatureUpdaterHandler

    handler = FeatureUpdaterHandler(RedisFeatureStore(redis_client(settings.redis)))
    _worker(settings, names.GROUP_FEATURE_UPDATER, names.TOPIC_FEEDBACK, handler, batch_size).run()


def stream_ratings(settings: Settings, version: int) -> Iterator[Rating]:
    """The stream period of a feature version, in time order (ties by user, movie)."""
    from streamml.features.batch import read_part

    table = read_part(settings, version, "stream", columns=["userId", "movieId", "rating", "timestamp"])
    table = table.sort_by([("timestamp", "ascending"), ("userId", "ascending"), ("movieId", "ascending")])
    for batch in table.to_batches(max_chunksize=10_000):
        cols = batch.to_pydict()
        for u, m, r, t in zip(cols["userId"], cols["movieId"], cols["rating"], cols["timestamp"], strict=True):
            yield Rating(int(u), int(m), float(r), int(t))


def consumer_lag(
    settings: Settings, group: str = names.GROUP_SCORER, topic: str = names.TOPIC_REQUESTS
) -> Callable[[], dict[str, int]]:
    """Per-partition lag of ``group`` on ``topic`` (end offset minus committed offset); by default the scorer's."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    probe = Consumer(consumer_config(settings.kafka, group, client_id="streamml-lag-probe"))

    def lag() -> dict[str, int]:
        try:
            meta = probe.list_topics(topic, timeout=5)
            parts = [TopicPartition(topic, p) for p in meta.topics[topic].partitions]
            committed = {tp.partition: tp.offset for tp in probe.committed(parts, timeout=5)}
            return {
                str(tp.partition): partition_lag(
                    *probe.get_watermark_offsets(tp, timeout=5), committed.get(tp.partition)
                )
                for tp in parts
            }
        except KafkaException as exc:
            logger.warning("lag probe failed: %s", exc)
            return {}

    return lag


def wait_until_caught_up(settings: Settings, timeout: float = 300.0) -> None:
    """Wait until the scorer and the feature updater have consumed everything on their topics (lag 0); raise a
    :class:`TransientError` naming what is behind at the deadline."""
    probes = {
        "scorer": consumer_lag(settings),
        "feature updater": consumer_lag(settings, names.GROUP_FEATURE_UPDATER, names.TOPIC_FEEDBACK),
    }
    deadline = time.monotonic() + timeout
    while True:
        behind = {name: sum(probe().values()) for name, probe in probes.items()}
        if not any(behind.values()):
            return
        if time.monotonic() > deadline:
            raise TransientError(f"still behind after {timeout:g} s: {behind} messages; is a replay running?")
        time.sleep(1.0)


def run_metrics(settings: Settings, log_path: Path, batch_size: int = 1000) -> None:
    """Join predictions with feedback and publish live metrics until SIGTERM."""
    from streamml.stores.metrics import RedisMetricsStore
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.metrics import MetricLog, MetricsHandler
    from streamml.streaming.telemetry import LiveMetrics, serve_metrics

    gauges = LiveMetrics()
    serve_metrics(
        settings.aggregator.metrics_port, metrics_host(settings), variable="STREAMML_AGGREGATOR__METRICS_PORT"
    )
    handler = MetricsHandler(
        RedisMetricsStore(redis_client(settings.redis)),
        MetricLog(log_path),
        consumer_lag(settings),
        on_snapshot=gauges.update,
    )
    topics = [names.TOPIC_PREDICTIONS, names.TOPIC_FEEDBACK, names.TOPIC_REQUESTS_DLQ]
    worker = _worker(settings, names.GROUP_METRICS, topics, handler, batch_size)
    worker.on_idle = lambda: worker.process([])
    worker.run()
