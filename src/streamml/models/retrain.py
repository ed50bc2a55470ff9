"""Retraining on what the platform has learned since: history plus the archived feedback, as a new raw snapshot.

The active feature version's history (its raw snapshot's ratings before its cutoff) and every rating the feedback
archive holds (``features/online/``, one row per rating id) become one MovieLens snapshot (ratings, and the same
movies), ingested like any other. The feature job then builds point-in-time features over it with the same feature
definition, split so that the newest archived feedback is the evaluation stream: the challenger is judged on the
most recent behaviour, which is what it will serve.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from streamml import names
from streamml.config import Settings
from streamml.errors import DataValidationError

logger = logging.getLogger(__name__)

EVALUATION_SHARE = 0.5
"""The newest share of the archived feedback that the retrained version evaluates on (the rest is trained on)."""
MIN_FEEDBACK = 200
"""Fewer archived ratings than this give no meaningful evaluation stream: retraining refuses."""
QUANTILE_RANGE = (0.5, 0.995)


class NotEnoughFeedback(DataValidationError):
    """The archive holds too little feedback to retrain on (a scheduled run then has nothing to do)."""


def retrain_quantile(history: int, feedback: int, evaluation_share: float = EVALUATION_SHARE) -> float:
    """The split quantile that leaves the newest ``evaluation_share`` of the feedback as the stream."""
    total = history + feedback
    quantile = 1.0 - evaluation_share * feedback / total
    return round(min(max(quantile, QUANTILE_RANGE[0]), QUANTILE_RANGE[1]), 4)


def build_retrain_snapshot(settings: Settings, feature_version: int | None = None) -> dict[str, Any]:
    """Ingest history + archived feedback as a snapshot; return ``{"snapshot", "quantile", "history", "feedback",
    "base_version"}``. Raises :class:`NotEnoughFeedback` with too little feedback."""
    import pandas as pd

    from streamml.data import movielens
    from streamml.data.ingest import RAW_PREFIX, ingest
    from streamml.features.batch import read_manifest
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.objects import ObjectStore
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.archive import read_archive

    archive = read_archive(settings)  # first: a scheduled run on a fresh deploy has nothing to do, and says so
    if len(archive) < MIN_FEEDBACK:
        raise NotEnoughFeedback(
            f"the feedback archive holds {len(archive)} ratings; retraining needs at least {MIN_FEEDBACK}"
        )
    version = RedisFeatureStore(redis_client(settings.redis)).active_version(feature_version)
    manifest = read_manifest(settings, version)
    raw = ObjectStore(settings.minio, names.BUCKET_RAW)
    with tempfile.TemporaryDirectory(prefix="streamml-retrain-") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        for name in (names.RATINGS_FILE, names.MOVIES_FILE):
            raw.get_file(f"{RAW_PREFIX}/{manifest['snapshot']}/{name}", base / name)
        ratings, movies = movielens.load(base)
        history = ratings[ratings["timestamp"] < int(manifest["cutoff_ts"])]
        # A rating sent again (a replay with --again, a drift scenario) is archived again: the newest copy counts (one
        # user is one partition, so its later offset is the later copy).
        archive = archive.sort_values(["event_ts", "user_id", "movie_id", "kafka_offset"], kind="stable")
        feedback = pd.DataFrame(
            {
                "userId": archive["user_id"].astype("int64"),
                "movieId": archive["movie_id"].astype("int64"),
                "rating": archive["rating"].astype("float64"),
                "timestamp": archive["event_ts"].astype("int64"),
            }
        )
        # One rating per (user, movie, time); history (before the cutoff) never overlaps the feedback (after it).
        combined = pd.concat([history, feedback], ignore_index=True).drop_duplicates(
            ["userId", "movieId", "timestamp"], keep="last"
        )
        extended = Path(tmp) / "extended"
        extended.mkdir()
        combined.to_csv(extended / names.RATINGS_FILE, index=False)
        movies.to_csv(extended / names.MOVIES_FILE, index=False)
        snapshot = ingest(settings, extended)
    quantile = retrain_quantile(len(history), len(combined) - len(history))
    logger.info(
        "retrain snapshot=%s history=%d feedback=%d quantile=%s (from feature version %d)",
        snapshot.snapshot,
        len(history),
        len(combined) - len(history),
        quantile,
        version,
    )
    return {
        "snapshot": snapshot.snapshot,
        "quantile": quantile,
        "history": len(history),
        "feedback": len(combined) - len(history),
        "base_version": version,
    }
