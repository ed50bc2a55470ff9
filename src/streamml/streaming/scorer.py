"""The scorer's handler: a micro-batch of rating requests -> predictions, dead letters and Redis results.

Per batch: one Redis round trip for every user, movie and the globals blob; one vectorised predict; no pandas. With a
challenger to shadow (``shadow``), the same feature matrix is scored by it too and its scores go to
``predictions.shadow.v1`` only; a challenger that fails never touches the champion's results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from streamml import names
from streamml.bounds import MAX_FEATURE_MAGNITUDE
from streamml.errors import DataValidationError, PoisonMessageError, TransientError
from streamml.features import packing, spec
from streamml.stores.features import RedisFeatureStore
from streamml.streaming.messages import Prediction, RatingRequest, ShadowPrediction
from streamml.streaming.worker import BatchResult, Output, parse_batch

logger = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ServingModel:
    """A loaded model: what to call and what to stamp on each prediction."""

    name: str
    version: str
    predict: Predict
    threshold: float = names.DECISION_THRESHOLD


@dataclass
class ScoredBatch(BatchResult):
    """A scorer batch's result, with what observers count once it is delivered (never sent anywhere itself)."""

    predictions: list[Prediction] = field(default_factory=list)
    shadowed: int = 0
    shadow_failures: int = 0


Outcome = Prediction | PoisonMessageError
"""What scoring one request gives: its prediction, or why it can never be scored."""


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
        shadow: Callable[[], ServingModel | None] | None = None,
        shadow_topic: str = names.TOPIC_PREDICTIONS_SHADOW,
    ) -> None:
        self.features = features
        self.predictions_topic = predictions_topic
        self.dlq_topic = dlq_topic
        self.model = model
        self.shadow = shadow
        self.shadow_topic = shadow_topic
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
        result = ScoredBatch()
        parsed = parse_batch(RatingRequest, messages, result, self.dlq_topic)
        if not parsed:
            return result
        results: list[tuple[str, bytes]] = []
        challenger = self.shadow() if self.shadow is not None else None
        outcomes, matrix, rows = self._score([r for _, r in parsed])
        if challenger is not None and rows:
            self._shadow(challenger, outcomes, matrix, rows, result)
        for (msg, _), outcome in zip(parsed, outcomes, strict=True):
            if isinstance(outcome, PoisonMessageError):
                result.refuse(msg, outcome, self.dlq_topic)
                continue
            encoded = outcome.encode()
            result.predictions.append(outcome)
            result.outputs.append(Output(self.predictions_topic, str(outcome.user_id), encoded))
            results.append((names.prediction_key(outcome.request_id), encoded))

        def write_results() -> None:
            self.features.write_predictions(results, self.ttl)

        result.sink = write_results if results else None
        return result

    def _shadow(
        self,
        challenger: ServingModel,
        outcomes: list[Outcome],
        matrix: np.ndarray,
        rows: list[int],
        result: ScoredBatch,
    ) -> None:
        """Score the champion's predictions again with ``challenger`` into shadow outputs; a failure only counts."""
        scored = [(k, p) for k, i in enumerate(rows) if isinstance(p := outcomes[i], Prediction)]
        if not scored:
            return
        try:
            scores = challenger.predict(matrix[[k for k, _ in scored]] if len(scored) < len(rows) else matrix)
            scores = np.asarray(scores, dtype=np.float64).reshape(len(scored))
        except TransientError:
            raise
        except Exception as exc:  # noqa: BLE001 - the challenger is on trial: its failure must not cost a result
            logger.warning("challenger version=%s failed on a batch of %d: %s", challenger.version, len(scored), exc)
            result.shadow_failures += 1
            return
        scored_at = self.clock()
        for (_, p), s in zip(scored, scores.tolist(), strict=True):
            if not 0.0 <= s <= 1.0:  # NaN too
                continue
            shadow = ShadowPrediction.model_construct(  # every field comes from a validated prediction
                request_id=p.request_id,
                user_id=p.user_id,
                movie_id=p.movie_id,
                score=s,
                model_name=challenger.name,
                model_version=challenger.version,
                champion_version=p.model_version,
                feature_version=p.feature_version,
                event_ts=p.event_ts,
                scored_at=scored_at,
            )
            result.outputs.append(Output(self.shadow_topic, str(p.user_id), shadow.encode()))
            result.shadowed += 1

    def score(self, requests: Sequence[RatingRequest]) -> list[Outcome]:
        """One outcome per request, in order. A request whose user's, movie's or the globals' online state cannot be
        read, or that the model cannot score, is refused; the others are scored. Only infrastructure faults raise."""
        return self._score(requests)[0]

    def _score(self, requests: Sequence[RatingRequest]) -> tuple[list[Outcome], np.ndarray, list[int]]:
        """:meth:`score`, and the feature matrix of the requests whose state could be read (``rows``)."""
        version = self.feature_version()
        model = self.model()
        n = len(requests)
        blobs = self.features.get_many(version, [r.user_id for r in requests], [r.movie_id for r in requests])
        outcomes: list[Outcome | None] = [None] * n
        globals_blob = blobs[2 * n]
        try:
            globals_state = packing.unpack_globals(globals_blob) if globals_blob is not None else spec.GlobalState()
        except DataValidationError as exc:
            return [PoisonMessageError(f"feature version {version}: {exc}", "bad_feature_blob")] * n, _NO_ROWS, []
        # Each kind's blobs decode in one call (the fixed layouts of packing); a blob that cannot be read refuses
        # its rows.
        users, movies = packing.decode_users(blobs[:n]), packing.decode_movies(blobs[n : 2 * n])
        for kind, decoded, attribute in (("user", users, "user_id"), ("movie", movies, "movie_id")):
            for i, error in decoded.errors.items():
                if outcomes[i] is None:
                    entity = getattr(requests[i], attribute)
                    outcomes[i] = PoisonMessageError(f"{kind} {entity}: {error}", "bad_feature_blob")
        rows = [i for i in range(n) if outcomes[i] is None]
        matrix = _NO_ROWS
        if rows:
            every = len(rows) == n
            matrix = spec.feature_columns_matrix(
                users.records if every else users.records[rows],
                movies.records if every else movies.records[rows],
                globals_state,
                np.fromiter((requests[i].event_ts for i in rows), np.int64, count=len(rows)),
            )
            # A state inside the blob bounds can still give features outside the message bounds (a forged blob):
            # those rows are refused, not scored.
            in_bounds = np.all(np.abs(matrix) <= MAX_FEATURE_MAGNITUDE, axis=1) & (
                abs(globals_state.total) <= MAX_FEATURE_MAGNITUDE
            )
            scores = _predict_rows(model.predict, matrix)
            cold = spec.cold_start_mask(matrix)
            scored_at = self.clock()
            served_globals = (globals_state.count, globals_state.total, globals_state.likes)
            vectors = matrix.tolist()  # one call for the batch, not one per row
            for k, i in enumerate(rows):
                r, s = requests[i], float(scores[k])
                if not in_bounds[k]:  # NaN too
                    outcomes[i] = PoisonMessageError(
                        f"user {r.user_id} movie {r.movie_id}: the online state gives features outside their bounds "
                        f"(|value| > {MAX_FEATURE_MAGNITUDE:g} or not finite)",
                        "bad_feature_blob",
                    )
                    continue
                if not 0.0 <= s <= 1.0:  # NaN too
                    outcomes[i] = PoisonMessageError(
                        f"model {model.name} v{model.version} gave score {s!r} for user {r.user_id} movie {r.movie_id}",
                        "scoring_error",
                    )
                    continue
                outcomes[i] = Prediction(
                    request_id=r.request_id,
                    user_id=r.user_id,
                    movie_id=r.movie_id,
                    score=s,
                    label=1 if s >= model.threshold else 0,
                    model_name=model.name,
                    model_version=model.version,
                    feature_version=version,
                    cold_start=bool(cold[k]),
                    event_ts=r.event_ts,
                    sent_at=r.sent_at,
                    scored_at=scored_at,
                    features=tuple(vectors[k]),
                    globals_used=served_globals,
                )
        return cast(list[Outcome], outcomes), matrix, rows


_NO_ROWS = np.empty((0, spec.N_FEATURES))


def _predict_rows(predict: Predict, matrix: np.ndarray) -> np.ndarray:
    """Scores of every row; when the model refuses the batch, row by row, NaN for the rows it refuses (a feature
    vector no model can score is refused, the others are scored). Infrastructure faults propagate."""
    try:
        return np.asarray(predict(matrix), dtype=np.float64).reshape(len(matrix))
    except TransientError:
        raise
    except Exception as exc:  # noqa: BLE001 - which row? each is retried alone; the failing ones are refused
        logger.warning("model refused a batch of %d rows (%s); scoring row by row", len(matrix), exc)
    scores = np.full(len(matrix), np.nan)
    for k in range(len(matrix)):
        try:
            scores[k] = float(np.asarray(predict(matrix[k : k + 1]), dtype=np.float64).reshape(1)[0])
        except TransientError:
            raise
        except Exception:  # noqa: BLE001, S112 - this row is refused as a scoring error
            continue
    return scores
