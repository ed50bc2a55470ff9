"""Process runners of the streaming programs (scorer, feature updater, metrics aggregator, feedback archive,
replayer; each started by the CLI, supervised in the local stack) and the consumer-lag probes that tell when they
caught up."""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamml import names
from streamml.config import Settings
from streamml.errors import ModelUnavailableError, TransientError
from streamml.streaming.clients import consumer_config, ensure_topics, partition_lag, producer_config
from streamml.streaming.replayer import Drift, Pace, Rating, send_ratings
from streamml.streaming.scorer import ServingModel
from streamml.streaming.worker import Handler, Worker, WorkerObserver, retry

if TYPE_CHECKING:
    from streamml.streaming.monitor import DriftMonitor, RetrainTrigger

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
    shadow: str = names.TOPIC_PREDICTIONS_SHADOW


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
    """Score ``topics.requests`` with @champion of ``model_name`` (or ``model``, when given) until SIGTERM; with
    ``settings.scorer.shadow``, @challenger too, to ``topics.shadow``.

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
    used = [topics.requests, topics.predictions, topics.dlq, topics.shadow]
    used += [topics.model_events] if model is None else []
    retry("topic creation", lambda: ensure_topics(settings.kafka, used))
    events: Consumer | None = None
    champion: ChampionModel | None = None
    try:
        if model is None:
            # Each scorer process sees every model event: its own group, starting at the end.
            group_id = f"{names.GROUP_SCORER_MODEL_EVENTS}-{uuid.uuid4().hex[:8]}"
            events = Consumer({**consumer_config(settings.kafka, group_id), "auto.offset.reset": "latest"})
            events.subscribe([topics.model_events])
            champion = ChampionModel(
                settings.mlflow.tracking_uri,
                model_name=model_name,
                poll_seconds=settings.scorer.model_poll_seconds,
                events=events,
                watch=True,
                shadow=settings.scorer.shadow,
                on_loaded=metrics.model_loaded,
                on_failed=metrics.model_failed,
                signing_key=settings.mlflow.signing_key.get_secret_value(),
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
            shadow=champion.challenger if champion is not None and champion.shadow else None,
            shadow_topic=topics.shadow,
        )
        _worker(settings, group, topics.requests, handler, batch_size, observer=metrics).run()
    finally:
        if champion is not None:
            champion.close()  # the watcher polls the events consumer: stop it first
        if events is not None:
            events.close()


def _model_ready(model: Callable[[], object]) -> Callable[[], object]:
    def load() -> object:
        try:
            return model()
        except ModelUnavailableError as exc:  # no champion yet: wait for the training DAG
            raise TransientError(str(exc)) from exc

    return load


def run_updater(
    settings: Settings,
    batch_size: int = 500,
    topic: str = names.TOPIC_FEEDBACK,
    dlq: str = names.TOPIC_REQUESTS_DLQ,
    group: str = names.GROUP_FEATURE_UPDATER,
) -> None:
    """Apply ratings.feedback.v1 (or ``topic``) to the online features until SIGTERM; any number of updaters may
    share the group."""
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.updater import FeatureUpdaterHandler

    handler = FeatureUpdaterHandler(RedisFeatureStore(redis_client(settings.redis)), dlq_topic=dlq)
    _worker(settings, group, topic, handler, batch_size).run()


def run_archive(settings: Settings) -> None:
    """Archive ratings.feedback.v1 joined with what was served for each request (Redis ``pred:{id}``) as parquet
    under ``s3://features/online/``, exactly once, until SIGTERM. A batch is what one consume call gives: up to
    ``archive.flush_records`` messages within ``archive.flush_seconds``."""
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.objects import ObjectStore
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.archive import ArchiveHandler

    handler = ArchiveHandler(
        RedisFeatureStore(redis_client(settings.redis)), ObjectStore(settings.minio, names.BUCKET_FEATURES)
    )
    worker = _worker(settings, names.GROUP_ARCHIVE, names.TOPIC_FEEDBACK, handler, settings.archive.flush_records)
    worker.poll_timeout = settings.archive.flush_seconds
    worker.run()


def stream_ratings(settings: Settings, version: int) -> Iterator[Rating]:
    """The stream period of a feature version, in time order (ties by user, movie)."""
    from streamml.features.batch import read_part

    table = read_part(settings, version, "stream", columns=["userId", "movieId", "rating", "timestamp"])
    table = table.sort_by([("timestamp", "ascending"), ("userId", "ascending"), ("movieId", "ascending")])
    for batch in table.to_batches(max_chunksize=10_000):
        cols = batch.to_pydict()
        for u, m, r, t in zip(cols["userId"], cols["movieId"], cols["rating"], cols["timestamp"], strict=True):
            yield Rating(int(u), int(m), float(r), int(t))


def genre_movies(settings: Settings, version: int, genre: str) -> frozenset[int]:
    """The ids of the movies of ``genre`` in a feature version's catalogue."""
    from streamml.features import spec
    from streamml.features.batch import read_part

    if genre not in spec.GENRE_INDEX:
        raise ValueError(f"unknown genre {genre!r}; one of {', '.join(spec.GENRES)}")
    index = spec.GENRE_INDEX[genre]
    table = read_part(settings, version, "movies", columns=["movieId", "genres"])
    return frozenset(
        m for m, g in zip(*(table.column(c).to_pylist() for c in ("movieId", "genres")), strict=True) if index in g
    )


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay will do: ``goal`` requests of feature version ``version`` at ``pace``; ``skipped`` holds the
    mark of an earlier full replay when this one will not run."""

    version: int
    goal: int
    total: int
    pace: Pace
    feedback_delay: float
    skipped: dict[str, Any] | None = None
    drift: Drift | None = None

    @property
    def pace_text(self) -> str:
        return f"{self.pace.rate:g} requests/s" if self.pace.rate else f"{self.pace.speedup:g}x event time"


def plan_replay(
    settings: Settings,
    *,
    rate: float | None = None,
    speedup: float | None = None,
    limit: int | None = None,
    feedback_delay: float | None = None,
    feature_version: int | None = None,
    again: bool | None = None,
    drift: Drift | None = None,
) -> ReplayPlan:
    """The replay of a feature version's stream period (default: the active one) at ``rate`` or ``speedup`` (default
    ``settings.replay.rate``). A period fully replayed on that version already is skipped unless ``again``: its
    feedback would change nothing, and requests would be scored with features that already saw their ratings."""
    from streamml.features.batch import read_manifest
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client

    if rate is not None and speedup is not None:
        raise ValueError("give one of rate or speedup, not both")
    store = RedisFeatureStore(redis_client(settings.redis))
    version = store.active_version(feature_version)
    done = store.replayed(version)
    skipped = done if done is not None and not (settings.replay.again if again is None else again) else None
    total = int(read_manifest(settings, version)["rows"]["stream"])
    return ReplayPlan(
        version=version,
        goal=min(total, limit or total),
        total=total,
        pace=Pace(rate=settings.replay.rate if rate is None and speedup is None else rate, speedup=speedup),
        feedback_delay=settings.replay.feedback_delay if feedback_delay is None else feedback_delay,
        skipped=skipped,
        drift=drift,
    )


def run_replay(settings: Settings, plan: ReplayPlan, on_progress: Callable[[int], None] | None = None) -> int:
    """Send the planned requests and their feedback; when the whole period was sent, mark the version replayed (so
    a redeploy does not replay it again). Returns the requests sent."""
    from confluent_kafka import Producer

    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client

    ensure_topics(settings.kafka, names.TOPICS)
    producer = Producer(producer_config(settings.kafka, client_id="streamml-replayer"))
    ratings = stream_ratings(settings, plan.version)
    if plan.drift is not None:
        ratings = plan.drift.apply(ratings, genre_movies(settings, plan.version, plan.drift.genre))
    sent = send_ratings(
        ratings,
        producer,
        plan.pace,
        feedback_delay=plan.feedback_delay,
        limit=plan.goal,
        on_progress=on_progress,
    )
    if sent >= plan.total:
        finished = datetime.now(UTC).isoformat(timespec="seconds")
        RedisFeatureStore(redis_client(settings.redis)).mark_replayed(
            plan.version, {"requests": sent, "finished": finished, "pace": plan.pace_text}
        )
    return sent


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


def drift_monitor(settings: Settings) -> DriftMonitor:
    """The aggregator's drift monitor, with the thresholds of ``settings.monitor`` and the registry's profiles."""
    import mlflow  # noqa: F401 - imported now (tens of seconds on a busy machine), not in the loop at the first fetch

    from streamml.models.profile import ProfileSource
    from streamml.streaming.drift import DriftThresholds
    from streamml.streaming.monitor import DriftMonitor

    m = settings.monitor
    thresholds = DriftThresholds(
        feature_psi=m.feature_psi,
        min_drifted_features=m.min_drifted_features,
        score_psi=m.score_psi,
        calibration_gap=m.calibration_gap,
        min_window=m.min_window,
    )
    profiles = ProfileSource(settings.mlflow.tracking_uri, names.MODEL_NAME)
    return DriftMonitor(profiles, thresholds, m.window, m.quality_window, m.persist, m.overall_window)


def retrain_trigger(settings: Settings) -> RetrainTrigger:
    """Triggers ``movielens_retrain`` through Airflow's REST API v2, at most once per ``monitor.cooldown_seconds``."""
    from streamml.airflow_client import AirflowClient
    from streamml.streaming.monitor import RetrainTrigger

    def trigger(conf: dict[str, Any]) -> str:
        client = AirflowClient(settings.airflow)
        try:
            return client.trigger(names.DAG_RETRAIN, conf, dag_wait=5.0)
        finally:
            client.close()

    return RetrainTrigger(trigger, cooldown=settings.monitor.cooldown_seconds)


def run_metrics(settings: Settings, batch_size: int = 1000, log_path: Path | None = None) -> None:
    """Join predictions with feedback and publish live metrics until SIGTERM; the metric log goes to ``log_path``
    (default: ``metrics/metric_log.csv`` under the state directory)."""
    from streamml.paths import StackPaths
    from streamml.stores.metrics import RedisMetricsStore
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.metrics import MetricLog, MetricsHandler, MetricsState
    from streamml.streaming.telemetry import LiveMetrics, serve_metrics

    gauges = LiveMetrics()
    serve_metrics(
        settings.aggregator.metrics_port, metrics_host(settings), variable="STREAMML_AGGREGATOR__METRICS_PORT"
    )
    handler = MetricsHandler(
        RedisMetricsStore(redis_client(settings.redis)),
        MetricLog(log_path or StackPaths.from_settings(settings).state / "metrics" / "metric_log.csv"),
        consumer_lag(settings),
        state=MetricsState(drift=drift_monitor(settings)),
        on_snapshot=gauges.update,
        retrain=retrain_trigger(settings) if settings.monitor.trigger else None,
    )
    topics = [names.TOPIC_PREDICTIONS, names.TOPIC_PREDICTIONS_SHADOW, names.TOPIC_FEEDBACK, names.TOPIC_REQUESTS_DLQ]
    worker = _worker(settings, names.GROUP_METRICS, topics, handler, batch_size)
    worker.on_idle = lambda: worker.process([])
    worker.run()
