"""Prometheus metrics: the scorer's, served at ``/metrics`` on ``settings.scorer.metrics_port``, and the metrics
aggregator's live gauges (:class:`LiveMetrics`, ``streamml_live_*``: rolling AUC, accuracy, MAE, latency p99,
feedback-to-applied p50/p99, stale-prediction share) on ``settings.aggregator.metrics_port``.

Recorded by the worker (as its :class:`~streamml.streaming.worker.WorkerObserver`, after a batch is delivered and
committed) and by the champion model's reload hooks; the handler itself stays pure. Counters restart at zero with the
process, as Prometheus expects.

| metric | type | labels |
|---|---|---|
| ``streamml_scorer_messages_consumed_total`` | counter | |
| ``streamml_scorer_consumer_errors_total`` | counter | |
| ``streamml_scorer_predictions_total`` | counter | |
| ``streamml_scorer_cold_starts_total`` | counter | (predictions for a user or movie without history) |
| ``streamml_scorer_shadow_predictions_total`` | counter | (the challenger's scores delivered to the shadow topic) |
| ``streamml_scorer_shadow_failures_total`` | counter | (batches the challenger failed to score) |
| ``streamml_scorer_dlq_records_total`` | counter | ``reason``: a ``POISON_REASONS`` label |
| ``streamml_scorer_batch_size`` | histogram | (messages per delivered batch) |
| ``streamml_scorer_batch_seconds`` | histogram | (handler + Redis write + flush + commit) |
| ``streamml_scorer_retries_total`` | counter | ``operation``: handler and sink (Redis), delivery and commit (Kafka) |
| ``streamml_scorer_model_info`` | info | ``model_name``, ``model_version`` of the model serving |
| ``streamml_scorer_model_version`` | gauge | (the version number serving; 0 before the first load) |
| ``streamml_scorer_model_loads_total`` | counter | ``outcome``: success, failure |
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from streamml.errors import ConfigError
from streamml.streaming.messages import POISON_REASONS
from streamml.streaming.scorer import ScoredBatch, ServingModel
from streamml.streaming.worker import BatchResult

logger = logging.getLogger(__name__)

BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)
BATCH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RETRY_OPERATIONS = ("handler", "sink", "delivery", "commit")


class ScorerMetrics:
    """The scorer's instruments in ``registry`` (the process-wide one by default; unit tests pass their own)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, namespace: str = "streamml_scorer") -> None:
        def name(suffix: str) -> str:
            return f"{namespace}_{suffix}"

        self.registry = registry
        self.consumed = Counter(name("messages_consumed"), "Messages consumed and committed.", registry=registry)
        self.consumer_errors = Counter(
            name("consumer_errors"), "Error events returned by the Kafka consumer.", registry=registry
        )
        self.predictions = Counter(name("predictions"), "Predictions delivered (topic and Redis).", registry=registry)
        self.cold_starts = Counter(
            name("cold_starts"), "Predictions for a user or a movie without history.", registry=registry
        )
        self.shadowed = Counter(
            name("shadow_predictions"), "Challenger scores delivered to the shadow topic.", registry=registry
        )
        self.shadow_failures = Counter(
            name("shadow_failures"), "Batches the challenger failed to score.", registry=registry
        )
        self.dlq = Counter(
            name("dlq_records"), "Requests refused into the DLQ, by reason.", ["reason"], registry=registry
        )
        self.batch_size = Histogram(
            name("batch_size"), "Messages per delivered batch.", buckets=BATCH_SIZE_BUCKETS, registry=registry
        )
        self.batch_seconds = Histogram(
            name("batch_seconds"),
            "Seconds per batch: handler, Redis write, producer flush and commit.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            name("retries"),
            "Retries after an infrastructure fault: handler and sink are Redis, delivery and commit are Kafka.",
            ["operation"],
            registry=registry,
        )
        self.model = Info(name("model"), "The model serving.", registry=registry)
        self.model_version = Gauge(name("model_version"), "Version number of the model serving.", registry=registry)
        self.model_loads = Counter(name("model_loads"), "Model loads, by outcome.", ["outcome"], registry=registry)
        # Every label value exists from the start, so a rate() of zero is 0 rather than no data.
        for reason in POISON_REASONS:
            self.dlq.labels(reason=reason)
        for operation in RETRY_OPERATIONS:
            self.retries.labels(operation=operation)
        for outcome in ("success", "failure"):
            self.model_loads.labels(outcome=outcome)

    # WorkerObserver
    def retried(self, what: str) -> None:
        self.retries.labels(operation=what).inc()

    def consumer_error(self) -> None:
        self.consumer_errors.inc()

    def batch_done(self, consumed: int, result: BatchResult, seconds: float) -> None:
        self.consumed.inc(consumed)
        self.batch_size.observe(consumed)
        self.batch_seconds.observe(seconds)
        for reason in result.refused:
            self.dlq.labels(reason=reason).inc()
        if isinstance(result, ScoredBatch):
            self.predictions.inc(len(result.predictions))
            self.cold_starts.inc(sum(p.cold_start for p in result.predictions))
            self.shadowed.inc(result.shadowed)
            self.shadow_failures.inc(result.shadow_failures)

    # ChampionModel hooks
    def model_loaded(self, model: ServingModel) -> None:
        self.model.info({"model_name": model.name, "model_version": model.version})
        self.model_version.set(float(model.version) if model.version.isdigit() else 0.0)
        self.model_loads.labels(outcome="success").inc()

    def model_failed(self, error: str) -> None:  # noqa: ARG002 - the hook's signature; the error is logged
        self.model_loads.labels(outcome="failure").inc()


class LiveMetrics:
    """The metrics aggregator's gauges, set from each :class:`~streamml.streaming.metrics.MetricsSnapshot` it
    publishes (``streamml_live_*``): rolling quality, freshness and what was refused."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, namespace: str = "streamml_live") -> None:
        def gauge(suffix: str, text: str) -> Gauge:
            return Gauge(f"{namespace}_{suffix}", text, registry=registry)

        self.gauges = {
            "auc": gauge("auc", "Rolling AUC of the latest joined predictions."),
            "accuracy": gauge("accuracy", "Rolling accuracy of the latest joined predictions."),
            "mae": gauge("mae", "Rolling mean absolute error of the latest joined predictions."),
            "latency_p99_ms": gauge("latency_p99_ms", "p99 of intended send time to scored, milliseconds."),
            "applied_p50_ms": gauge("feedback_applied_p50_ms", "p50 of feedback sent to applied online, ms."),
            "applied_p99_ms": gauge("feedback_applied_p99_ms", "p99 of feedback sent to applied online, ms."),
            "stale_share": gauge(
                "stale_prediction_share", "Share of joined predictions scored without an earlier rating of the user."
            ),
            "stale_mean": gauge("stale_ratings_mean", "Mean number of the user's earlier ratings not yet applied."),
            "joined_total": gauge("joined_total", "Predictions joined with their feedback since the start."),
            "dlq_total": gauge("dlq_records", "DLQ records seen since the start."),
            "refused_total": gauge("refused_total", "Unreadable predictions and feedback the aggregator refused."),
        }
        self.shadow = {
            "champion_auc": gauge("shadow_champion_auc", "Rolling AUC of the champion on the shadowed requests."),
            "challenger_auc": gauge("shadow_challenger_auc", "Rolling AUC of the challenger on the same requests."),
            "paired_total": gauge("shadow_paired_total", "Requests joined with both models' scores (this pair)."),
        }

    def update(self, snapshot: Any) -> None:
        for field_name, g in self.gauges.items():
            _set(g, getattr(snapshot, field_name))
        for field_name, g in self.shadow.items():
            _set(g, None if snapshot.shadow is None else getattr(snapshot.shadow, field_name))


def _set(g: Gauge, value: float | None) -> None:
    g.set(float("nan") if value is None else float(value))


def serve_metrics(
    port: int, host: str, registry: CollectorRegistry = REGISTRY, variable: str = "STREAMML_SCORER__METRICS_PORT"
) -> None:
    """Serve ``registry`` at ``http://host:port/metrics`` from a daemon thread; fail if the port is taken."""
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve Prometheus metrics on {host}:{port} ({exc}); set {variable} to a free port"
        ) from exc
    logger.info("serving Prometheus metrics at http://%s:%d/metrics", host, port)
