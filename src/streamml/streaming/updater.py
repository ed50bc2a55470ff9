"""The feature updater's handler: feedback (true ratings) -> incremental updates of the online user/movie features.

Uses the same definition as the Spark job (``features.spec``), so online features stay equal to training features
while the updater keeps up. A rating is identified by its rating id (user, movie, event time), not by the request
that carried it: a redelivery, a second replay of the same period or a redeploy applies each rating once. The ids of
applied ratings are kept in a per-version Redis set, read in the same round trip as the blobs and written in the same
MULTI/EXEC as the updates; materializing a version empties it with the blobs. Feedback whose user's, movie's or the
globals' state cannot be read goes to the DLQ (``bad_feature_blob``) and the rest of the batch is applied.
One updater process per feature version (movies are shared across partitions, so parallel updaters would race).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from streamml import names
from streamml.errors import DataValidationError, PoisonMessageError, TransientError
from streamml.features import packing, spec
from streamml.stores.features import RedisFeatureStore
from streamml.streaming.messages import Feedback
from streamml.streaming.worker import BatchResult, parse_batch

logger = logging.getLogger(__name__)


class FeatureUpdaterHandler:
    def __init__(
        self,
        store: RedisFeatureStore,
        dlq_topic: str = names.TOPIC_REQUESTS_DLQ,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.dlq_topic = dlq_topic
        self.clock = clock

    def __call__(self, messages: Sequence[Any]) -> BatchResult:
        # Bad feedback goes to the requests' DLQ too: one place to look for everything the platform refused.
        result = BatchResult()
        parsed = parse_batch(Feedback, messages, result, self.dlq_topic)
        if not parsed:
            return result
        version = self.store.current_version()
        if version is None:
            raise TransientError("no online feature version (feat:current) yet")
        update = self.update(version, parsed, result)
        if update is not None:
            result.sink = update
        return result

    def update(
        self, version: int, parsed: Sequence[tuple[Any, Feedback]], result: BatchResult
    ) -> Callable[[], None] | None:
        """Read the states the batch touches, apply the not-yet-applied ratings in event-time order and return the
        write (MULTI/EXEC) to run as the sink; feedback on unreadable states is refused into ``result``."""
        feedback = [f for _, f in parsed]
        users = sorted({f.user_id for f in feedback})
        movies = sorted({f.movie_id for f in feedback})
        applied, blobs = self.store.read_for_update(version, [f.rating_id for f in feedback], users, movies)
        user_state, bad_users = _states(users, blobs[: len(users)], packing.unpack_user, spec.UserState)
        movie_state, bad_movies = _states(movies, blobs[len(users) : -1], packing.unpack_movie, spec.MovieState)
        try:
            globals_state = packing.unpack_globals(blobs[-1]) if blobs[-1] is not None else spec.GlobalState()
        except DataValidationError as exc:
            for msg, _ in parsed:
                result.refuse(
                    msg, PoisonMessageError(f"feature version {version}: {exc}", "bad_feature_blob"), self.dlq_topic
                )
            return None
        fresh: dict[str, Feedback] = {}  # by rating id: a rating sent twice in one batch counts once
        for (msg, f), done in zip(parsed, applied, strict=True):
            problem = bad_users.get(f.user_id) or bad_movies.get(f.movie_id)
            if problem is not None:
                result.refuse(msg, PoisonMessageError(problem, "bad_feature_blob"), self.dlq_topic)
            elif not done:
                fresh.setdefault(f.rating_id, f)
        if not fresh:
            return None
        for f in sorted(fresh.values(), key=lambda f: (f.event_ts, f.user_id, f.movie_id)):
            spec.apply_rating(user_state[f.user_id], movie_state[f.movie_id], globals_state, f.rating, f.event_ts)
        touched_users = {u: packing.pack_user(user_state[u]) for u in {f.user_id for f in fresh.values()}}
        touched_movies = {m: packing.pack_movie(movie_state[m]) for m in {f.movie_id for f in fresh.values()}}
        globals_blob = packing.pack_globals(globals_state)
        rating_ids = list(fresh)
        sent = [f.sent_at for f in fresh.values() if f.sent_at is not None]

        def write() -> None:
            now = self.clock()
            latency = [max(now - s, 0.0) * 1000.0 for s in sent]
            self.store.apply_updates(version, touched_users, touched_movies, globals_blob, rating_ids, latency)

        return write


def _states(
    ids: Sequence[int], blobs: Sequence[bytes | None], unpack: Callable[[bytes], Any], empty: Callable[[], Any]
) -> tuple[dict[int, Any], dict[int, str]]:
    """Each id's state (empty when it has none), and the reason for each id whose blob cannot be read."""
    states: dict[int, Any] = {}
    bad: dict[int, str] = {}
    for key, blob in zip(ids, blobs, strict=True):
        try:
            states[key] = unpack(blob) if blob is not None else empty()
        except DataValidationError as exc:
            bad[key] = f"id {key}: {exc}"
    return states, bad
