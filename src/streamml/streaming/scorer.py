"""The scorer's handler: a micro-batch of rating requests -> predictions, dead letters and Redis results.

Per batch: one Redis round trip for every user, movie and the globals blob; one vectorised predict; no pandas.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np

from streamml import names
from streamml.errors import PoisonMessageError, TransientError
from streamml.features import spec
from streamml.stores.features import RedisFeatureStore
from streamml.streaming.messages import DeadLetter, Message, Prediction, RatingRequest, parse, poison_reason
from streamml.streaming.worker import BatchResult, Output

logger = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ServingModel:
    """A loaded model: what to call and what to stamp on each prediction."""

    name: str
    version: str
    predict: Predict
    threshold: float = 0.5


def dead_letter(msg: Any, error: Exception, topic: str = names.TOPIC_REQUESTS_DLQ) -> Output:
    payload = msg.value() or b""
    record = DeadLetter(
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        error_type=type(error).__name__,
        error=str(error)[:1000],
        payload=payload[:2048].decode("utf-8", errors="replace"),
    )
    return Output(topic, msg.key(), record.encode())


M = TypeVar("M", bound=Message)


def parse_batch(
    model: type[M], messages: Sequence[Any], dlq_topic: str, reasons: list[str] | None = None
) -> tuple[list[M], list[Output]]:
    """Decode a batch: the valid messages, and a dead letter for each one that can never be processed (whose
    :func:`~streamml.streaming.messages.poison_reason` is appended to ``reasons`` when given)."""
    valid: list[M] = []
    dead: list[Output] = []
    for msg in messages:
        try:
            valid.append(cast(M, parse(model, msg.value())))
        except PoisonMessageError as exc:
            dead.append(dead_letter(msg, exc, dlq_topic))
            if reasons is not None:
                reasons.append(poison_reason(str(exc)))
    return valid, dead


@dataclass
class ScoredBatch(BatchResult):
    """A scorer batch's result, with what observers count once it is delivered (never sent anywhere itself)."""

    predictions: list[Prediction] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # the poison reason of each dead letter


class ScorerHandler:
    """Score a batch of :class:`RatingRequest` messages with the current model and feature version."""

    def __init__(
        self,
        features: RedisFeatureStore,
        model: Callable[[], ServingModel],
        prediction_ttl_seconds: int = 24 * 3600,
        feature_version_refresh_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
        predictions_topic: str = names.TOPIC_PREDICTIONS,
        dlq_topic: str = names.TOPIC_REQUESTS_DLQ,
    ) -> None:
        self.features = features
        self.predictions_topic = predictions_topic
        self.dlq_topic = dlq_topic
        self.model = model
        self.ttl = prediction_ttl_seconds
        self.refresh = feature_version_refresh_seconds
        self.clock = clock
        self._version: int | None = None
        self._version_checked = 0.0

    def feature_version(self) -> int:
        now = time.monotonic()
        if self._version is None or now - self._version_checked > self.refresh:
            version = self.features.current_version()
            if version is None:
                raise TransientError("no online feature version (feat:current) yet; run movielens_training")
            self._version, self._version_checked = version, now
        return self._version

    def __call__(self, messages: Sequence[Any]) -> ScoredBatch:
        refused: list[str] = []
        requests, outputs = parse_batch(RatingRequest, messages, self.dlq_topic, refused)
        if not requests:
            return ScoredBatch(outputs, refused=refused)
        predictions = self.score(requests)
        encoded = [p.encode() for p in predictions]
        outputs += [
            Output(self.predictions_topic, str(p.user_id), v) for p, v in zip(predictions, encoded, strict=True)
        ]
        results = [(names.prediction_key(p.request_id), v) for p, v in zip(predictions, encoded, strict=True)]

        def write_results() -> None:
            self.features.write_predictions(results, self.ttl)

        return ScoredBatch(outputs, sink=write_results, predictions=predictions, refused=refused)

    def score(self, requests: Sequence[RatingRequest]) -> list[Prediction]:
        version = self.feature_version()
        model = self.model()
        user_ids = [r.user_id for r in requests]
        movie_ids = [r.movie_id for r in requests]
        blobs = self.features.get_many(version, user_ids, movie_ids)
        n = len(requests)
        users = [spec.unpack_user(b) if b is not None else None for b in blobs[:n]]
        movies = [spec.unpack_movie(b) if b is not None else None for b in blobs[n : 2 * n]]
        globals_blob = blobs[2 * n]
        globals_state = spec.unpack_globals(globals_blob) if globals_blob is not None else spec.GlobalState()
        matrix = spec.feature_matrix(
            users, movies, globals_state, np.fromiter((r.event_ts for r in requests), np.int64)
        )
        scores = model.predict(matrix)
        cold = spec.cold_start_mask(matrix)
        scored_at = self.clock()
        return [
            Prediction(
                request_id=r.request_id,
                user_id=r.user_id,
                movie_id=r.movie_id,
                score=float(s),
                label=int(s >= model.threshold),
                model_name=model.name,
                model_version=model.version,
                feature_version=version,
                cold_start=bool(c),
                event_ts=r.event_ts,
                sent_at=r.sent_at,
                scored_at=scored_at,
            )
            for r, s, c in zip(requests, scores, cold, strict=True)
        ]
