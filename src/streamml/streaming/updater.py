"""The feature updater's handler: feedback (true ratings) -> incremental updates of the online user/movie features.

Uses the same definition as the Spark job (``features.spec``), so online features stay equal to training features
while the updater keeps up. A rating is identified by its rating id (user, movie, event time), not by the request
that carried it: a redelivery, a second replay of the same period or a redeploy applies each rating once. The ids of
applied ratings are kept in a per-version Redis set, read in the same round trip as the blobs and written in the same
MULTI/EXEC as the updates; materializing a version empties it with the blobs. Feedback whose user's, movie's or the
globals' state cannot be read goes to the DLQ (``bad_feature_blob``) and the rest of the batch is applied.
Several updaters may run in one consumer group: the movie and globals states are shared across partitions, so each
batch reads and writes its states in one optimistic transaction (WATCH, then MULTI/EXEC, again on a conflict).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from streamml import names
from streamml.errors import DataValidationError, PoisonMessageError, TransientError
from streamml.features import packing, spec
from streamml.stores.features import FeatureUpdate, RedisFeatureStore
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
        """Refuse into ``result`` the feedback whose states cannot be read, and return the write to run as the sink:
        it applies the batch's not-yet-applied ratings in event-time order to the states as they are then, in one
        atomic read-and-write (:meth:`RedisFeatureStore.update_atomically`), so that parallel updaters on the shared
        movie and globals states never lose an update."""
        feedback = [f for _, f in parsed]
        rating_ids = [f.rating_id for f in feedback]
        users = sorted({f.user_id for f in feedback})
        movies = sorted({f.movie_id for f in feedback})
        applied, blobs = self.store.read_for_update(version, rating_ids, users, movies)
        problems = _States.read(version, users, movies, blobs).problems(feedback)
        for (msg, _), problem in zip(parsed, problems, strict=True):
            if problem is not None:
                result.refuse(msg, PoisonMessageError(problem, "bad_feature_blob"), self.dlq_topic)
        if all(done or problem is not None for done, problem in zip(applied, problems, strict=True)):
            return None
        refused = [problem is not None for problem in problems]

        def plan(applied: list[bool], blobs: list[bytes | None]) -> FeatureUpdate | None:
            states = _States.read(version, users, movies, blobs)
            if [problem is not None for problem in states.problems(feedback)] != refused:
                raise TransientError(f"feature states of version {version} changed to unreadable during an update")
            fresh: dict[str, Feedback] = {}  # by rating id: a rating sent twice in one batch counts once
            for f, done, bad in zip(feedback, applied, refused, strict=True):
                if not done and not bad:
                    fresh.setdefault(f.rating_id, f)
            if not fresh:
                return None
            glob = states.globals_state
            for f in sorted(fresh.values(), key=lambda f: (f.event_ts, f.user_id, f.movie_id)):
                spec.apply_rating(states.users[f.user_id], states.movies[f.movie_id], glob, f.rating, f.event_ts)
            now = self.clock()
            return FeatureUpdate(
                users=_packed({f.user_id for f in fresh.values()}, states.users, packing.pack_users),
                movies=_packed({f.movie_id for f in fresh.values()}, states.movies, packing.pack_movies),
                globals_blob=packing.pack_globals(glob),
                rating_ids=list(fresh),
                applied_latency_ms=[
                    max(now - f.sent_at, 0.0) * 1000.0 for f in fresh.values() if f.sent_at is not None
                ],
            )

        def write() -> None:
            self.store.update_atomically(version, rating_ids, users, movies, plan)

        return write


@dataclass
class _States:
    """The states a batch touches, read from their blobs (empty where there is none), and why any cannot be read."""

    users: dict[int, Any]
    movies: dict[int, Any]
    globals_state: spec.GlobalState
    bad_users: dict[int, str]
    bad_movies: dict[int, str]
    bad_globals: str | None

    @classmethod
    def read(cls, version: int, users: Sequence[int], movies: Sequence[int], blobs: Sequence[bytes | None]) -> _States:
        user_state, bad_users = _states(users, packing.unpack_users(blobs[: len(users)]))
        movie_state, bad_movies = _states(movies, packing.unpack_movies(blobs[len(users) : -1]))
        globals_state, bad_globals = spec.GlobalState(), None
        try:
            globals_state = packing.unpack_globals(blobs[-1]) if blobs[-1] is not None else globals_state
        except DataValidationError as exc:
            bad_globals = f"feature version {version}: {exc}"
        return cls(user_state, movie_state, globals_state, bad_users, bad_movies, bad_globals)

    def problems(self, feedback: Sequence[Feedback]) -> list[str | None]:
        """Per feedback, why its states cannot be read (None: they can)."""
        return [self.bad_globals or self.bad_users.get(f.user_id) or self.bad_movies.get(f.movie_id) for f in feedback]


def _states(ids: Sequence[int], unpacked: Sequence[Any]) -> tuple[dict[int, Any], dict[int, str]]:
    """Each id's state (the empty one where there is no blob), and the reason for each id whose blob cannot be
    read (``unpacked``: :func:`packing.unpack_users` or ``unpack_movies`` of the ids' blobs)."""
    states: dict[int, Any] = {}
    bad: dict[int, str] = {}
    for key, state in zip(ids, unpacked, strict=True):
        if isinstance(state, DataValidationError):
            bad[key] = f"id {key}: {state}"
        else:
            states[key] = state
    return states, bad


def _packed(ids: set[int], states: dict[int, Any], pack: Callable[[list[Any]], list[bytes]]) -> dict[int, bytes]:
    """The blobs of the states of ``ids``, packed in one call."""
    order = sorted(ids)
    return dict(zip(order, pack([states[i] for i in order]), strict=True))
