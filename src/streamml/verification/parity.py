"""Per-request parity: each online prediction against the offline point-in-time features and score of its rating row.

After a replay of the stream period, every prediction (its served feature vector, the global sums it used, its
score) is joined by (user, movie, event time) to the row of the version's ``stream`` parquet (the Spark job's
point-in-time features) and to that row's score by the same registered model version through ``mlflow.pyfunc``.
A prediction is *identical* when every feature and the score agree to 1e-9. Otherwise the counts say why:

- *stale*: the user's, the movie's or the global count is lower online: a rating earlier than the request was not
  applied yet when it was scored (feedback still in flight, or the updater behind);
- *ahead*: a count is higher online: a later rating was applied before the request was scored (the scorer behind);
- *mismatch*: the counts agree and the values do not: the online and offline definitions disagree. Never expected.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from streamml import names
from streamml.config import Settings
from streamml.features import spec
from streamml.streaming.messages import Prediction
from streamml.verification.streaming import pyfunc_scores

logger = logging.getLogger(__name__)

TOLERANCE = 1e-9
_USER_COUNT = spec.FEATURE_NAMES.index("user_count")
_MOVIE_COUNT = spec.FEATURE_NAMES.index("movie_count")


@dataclass
class ParityReport:
    """How the online predictions of one replay compare with the offline rows."""

    compared: int = 0
    identical: int = 0
    stale: int = 0
    ahead: int = 0
    mismatch: int = 0
    unmatched: int = 0  # predictions without an offline row (not a stream rating)
    max_score_diff: float = 0.0
    examples: list[str] = field(default_factory=list)  # the first real mismatches

    @property
    def identical_share(self) -> float:
        return self.identical / self.compared if self.compared else 0.0

    @property
    def ok(self) -> bool:
        return self.compared > 0 and self.mismatch == 0 and self.unmatched == 0


def compare(settings: Settings, version: int, predictions: Sequence[Prediction]) -> ParityReport:
    """Join ``predictions`` to the offline rows of feature version ``version`` and classify each one."""
    from streamml.features.batch import read_manifest, read_part

    columns = ["userId", "movieId", "timestamp", *spec.FEATURE_NAMES]
    table = read_part(settings, version, "stream", columns=columns).to_pandas()
    history_count = int(read_manifest(settings, version)["rows"]["history"])
    stamps = np.sort(table["timestamp"].to_numpy())
    rows = {
        (int(u), int(m), int(t)): i
        for i, (u, m, t) in enumerate(zip(table["userId"], table["movieId"], table["timestamp"], strict=True))
    }
    offline = table[list(spec.FEATURE_NAMES)].to_numpy(dtype=np.float64)
    report = ParityReport()
    matched: list[tuple[Prediction, int]] = []
    for p in predictions:
        row = rows.get((p.user_id, p.movie_id, p.event_ts))
        if row is None:
            report.unmatched += 1
        else:
            matched.append((p, row))
    offline_scores = np.empty(len(matched))
    by_model: dict[tuple[str, str], list[int]] = {}
    for k, (p, _) in enumerate(matched):
        by_model.setdefault((p.model_name, p.model_version), []).append(k)
    for (model_name, model_version), ks in by_model.items():
        features = offline[[matched[k][1] for k in ks]]
        offline_scores[ks] = pyfunc_scores(settings, model_name, model_version, features)
    for k, (p, row) in enumerate(matched):
        report.compared += 1
        online = np.asarray(p.features, dtype=np.float64)
        score_diff = abs(p.score - float(offline_scores[k]))
        report.max_score_diff = max(report.max_score_diff, score_diff)
        if np.max(np.abs(online - offline[row])) <= TOLERANCE and score_diff <= TOLERANCE:
            report.identical += 1
            continue
        # The global count of the row: every history rating and every stream rating strictly earlier.
        global_count = history_count + int(np.searchsorted(stamps, p.event_ts, side="left"))
        counts_online = (online[_USER_COUNT], online[_MOVIE_COUNT], p.globals_used[0])
        counts_offline = (offline[row, _USER_COUNT], offline[row, _MOVIE_COUNT], global_count)
        if any(a < b for a, b in zip(counts_online, counts_offline, strict=True)):
            report.stale += 1
        elif any(a > b for a, b in zip(counts_online, counts_offline, strict=True)):
            report.ahead += 1
        else:
            report.mismatch += 1
            if len(report.examples) < 5:
                worst = int(np.argmax(np.abs(online - offline[row])))
                report.examples.append(
                    f"request {p.request_id}: {spec.FEATURE_NAMES[worst]} online {online[worst]!r} offline "
                    f"{offline[row, worst]!r}; score online {p.score!r} offline {offline_scores[k]!r}"
                )
    return report


def replay_and_compare(
    settings: Settings,
    rate: float,
    feedback_delay: float,
    limit: int | None = None,
    timeout: float = 300.0,
    say: Callable[[str], None] = logger.info,
) -> tuple[ParityReport, list[Prediction]]:
    """Reset the active version to its batch snapshot (so online starts where offline does), replay its stream period
    at ``rate`` requests/s with feedback ``feedback_delay`` s later, collect the predictions and compare them."""
    from confluent_kafka import Producer

    from streamml.features.materialize import materialize
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.clients import producer_config
    from streamml.streaming.replayer import Pace, send_ratings
    from streamml.streaming.runners import stream_ratings, wait_until_caught_up
    from streamml.verification.streaming import tail_consumer

    version = RedisFeatureStore(redis_client(settings.redis)).active_version()
    # Feedback still queued would be applied on top of the reset snapshot: wait for a quiet platform first.
    wait_until_caught_up(settings)
    materialize(settings, version)
    run = f"parity{uuid.uuid4().hex[:6]}"
    tail = tail_consumer(settings, names.TOPIC_PREDICTIONS)
    producer = Producer(producer_config(settings.kafka, client_id="streamml-parity"))
    say(f"replaying feature version {version} at {rate:g} requests/s, feedback +{feedback_delay:g} s (run {run})")
    sent = send_ratings(
        stream_ratings(settings, version),
        producer,
        Pace(rate=rate),
        feedback_delay=feedback_delay,
        run_id=run,
        limit=limit,
        on_progress=lambda n: say(f"  {n:,} requests sent"),
    )
    predictions: dict[str, Prediction] = {}
    deadline = time.monotonic() + timeout
    while len(predictions) < sent and time.monotonic() < deadline:
        for msg in tail.consume(1000, 0.5):
            if msg.error() is None:
                p = Prediction.model_validate_json(msg.value())
                if p.request_id.startswith(run + "-"):
                    predictions[p.request_id] = p
    tail.close()
    if len(predictions) < sent:
        say(f"only {len(predictions):,} of {sent:,} predictions arrived within {timeout:g} s")
    return compare(settings, version, list(predictions.values())), list(predictions.values())
