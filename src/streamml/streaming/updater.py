"""The feature updater's handler: feedback (true ratings) -> incremental updates of the online user/movie features.

Uses the same definition as the Spark job (``features.spec``), so online features stay equal to training features
while the updater keeps up. Each rating is applied once even when redelivered: the ids of applied ratings are kept in
a per-version Redis set, read in the same round trip as the blobs and written in the same MULTI/EXEC as the updates.
One updater process per feature version (movies are shared across partitions, so parallel updaters would race).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from streamml import names
from streamml.errors import TransientError
from streamml.features import spec
from streamml.streaming.messages import Feedback
from streamml.streaming.scorer import parse_batch
from streamml.streaming.worker import BatchResult

logger = logging.getLogger(__name__)

APPLIED_TTL_SECONDS = 7 * 24 * 3600


def applied_key(version: int) -> str:
    return f"feat:v{version}:applied"


class FeatureUpdaterHandler:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def __call__(self, messages: Sequence[Any]) -> BatchResult:
        # Bad feedback goes to the requests' DLQ too: one place to look for everything the platform refused.
        feedback, outputs = parse_batch(Feedback, messages, names.TOPIC_REQUESTS_DLQ)
        if not feedback:
            return BatchResult(outputs)
        return BatchResult(outputs, sink=lambda: self.apply(feedback))

    def apply(self, feedback: Sequence[Feedback]) -> int:
        """Apply the not-yet-applied ratings in event-time order; return how many were applied."""
        try:
            return self._apply(feedback)
        except redis.RedisError as exc:
            raise TransientError(f"feature update failed: {exc}") from exc

    def _apply(self, feedback: Sequence[Feedback]) -> int:
        raw = self.client.get(names.FEATURE_VERSION_CURRENT)
        if raw is None:
            raise TransientError("no online feature version (feat:current) yet")
        version = int(raw)
        users = sorted({f.user_id for f in feedback})
        movies = sorted({f.movie_id for f in feedback})
        user_keys = [names.user_features_key(version, u) for u in users]
        movie_keys = [names.movie_features_key(version, m) for m in movies]
        globals_key = names.globals_features_key(version)
        ids = [f.request_id for f in feedback]
        pipe = self.client.pipeline(transaction=False)
        pipe.smismember(applied_key(version), ids)
        pipe.mget([*user_keys, *movie_keys, globals_key])
        seen, blobs = pipe.execute()
        user_state = {
            u: spec.unpack_user(b) if b is not None else spec.UserState()
            for u, b in zip(users, blobs[: len(users)], strict=True)
        }
        movie_state = {
            m: spec.unpack_movie(b) if b is not None else spec.MovieState()
            for m, b in zip(movies, blobs[len(users) : -1], strict=True)
        }
        globals_state = spec.unpack_globals(blobs[-1]) if blobs[-1] is not None else spec.GlobalState()
        fresh = [f for f, done in zip(feedback, seen, strict=True) if not done]
        fresh = list({f.request_id: f for f in fresh}.values())  # a duplicate inside one batch counts once
        for f in sorted(fresh, key=lambda f: (f.event_ts, f.user_id, f.movie_id)):
            movie = movie_state[f.movie_id]
            user_state[f.user_id].apply(f.rating, f.event_ts, movie.genres)
            movie.apply(f.rating)
            globals_state.apply(f.rating)
        if not fresh:
            return 0
        touched_users = {f.user_id for f in fresh}
        touched_movies = {f.movie_id for f in fresh}
        tx = self.client.pipeline(transaction=True)
        tx.mset(
            {
                **{names.user_features_key(version, u): spec.pack_user(user_state[u]) for u in touched_users},
                **{names.movie_features_key(version, m): spec.pack_movie(movie_state[m]) for m in touched_movies},
                globals_key: spec.pack_globals(globals_state),
            }
        )
        tx.sadd(applied_key(version), *[f.request_id for f in fresh])
        tx.expire(applied_key(version), APPLIED_TTL_SECONDS)
        tx.execute()
        return len(fresh)
