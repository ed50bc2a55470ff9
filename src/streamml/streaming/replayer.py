"""The replayer: the stream period in time order as live traffic, open loop.

Each request is stamped with its intended send time and sent then, whatever the scorer is doing (so latency is
measured from when the event should have happened, not from when a slow system got round to sending it). The true
rating follows as feedback ``feedback_delay`` seconds after the last request that shares its event time: ratings with
the same timestamp do not see each other's feedback, as in the offline features (strictly earlier timestamps only).
Request ids carry a run prefix (each replay's predictions are new results); feedback carries the rating id, the
same in every replay, so replaying a period again applies none of its ratings twice.
"""

from __future__ import annotations

import heapq
import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from streamml import names
from streamml.streaming.messages import Feedback, RatingRequest, rating_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rating:
    user_id: int
    movie_id: int
    rating: float
    event_ts: int


TWIN_OFFSET = 1_000_000_000
"""A drifted replay's new users: user ``u``'s twin is ``u + TWIN_OFFSET`` (far above MovieLens' ids)."""


@dataclass(frozen=True)
class Drift:
    """A change of the world injected into a replay (``streamml replay --drift-from N``), from its ``start``-th
    rating on. Either ``kind``:

    - ``genre``: the ratings of the movies in ``genre`` are the opposite (``5.5 - rating``: 5.0 becomes 0.5, 4.0
      becomes 1.5). They keep their rating ids, so the stream period must not have been replayed on the active
      feature version already (a fresh deploy's first replay), or the feature updater skips them;
    - ``twins``: a ``share`` of the ratings (drawn with ``seed``) come from a new population instead, each real
      user's twin (id + :data:`TWIN_OFFSET`) with the opposite taste; new users, so new rating ids.
    """

    start: int
    kind: Literal["genre", "twins"] = "genre"
    genre: str = "Drama"
    share: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.start < 0 or not 0.0 < self.share <= 1.0:
            raise ValueError(f"drift needs start >= 0 and 0 < share <= 1, got {self.start}, {self.share}")

    def apply(self, ratings: Iterable[Rating], genre_movies: Collection[int] = ()) -> Iterator[Rating]:
        """The ratings with the drift in; ``genre_movies``: the ids of the movies in ``genre`` (kind ``genre``)."""
        import random

        rng = random.Random(self.seed)  # noqa: S311 - a reproducible scenario, not a secret
        for i, r in enumerate(ratings):
            if i < self.start:
                yield r
            elif self.kind == "genre":
                yield Rating(r.user_id, r.movie_id, 5.5 - r.rating, r.event_ts) if r.movie_id in genre_movies else r
            elif rng.random() < self.share:
                yield Rating(r.user_id + TWIN_OFFSET, r.movie_id, 5.5 - r.rating, r.event_ts)
            else:
                yield r


@dataclass(frozen=True)
class Pace:
    """``rate`` events per second, or ``speedup`` times event time (one of the two)."""

    rate: float | None = None
    speedup: float | None = None

    def offset(self, index: int, event_ts: int, first_ts: int) -> float:
        if self.rate:
            return index / self.rate
        if self.speedup:
            return (event_ts - first_ts) / self.speedup
        return 0.0


def send_ratings(
    ratings: Iterable[Rating],
    producer: Any,
    pace: Pace,
    feedback_delay: float = 0.0,
    run_id: str | None = None,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Produce requests (and later feedback) for ``ratings`` in order; return the number of requests sent."""
    run = run_id or uuid.uuid4().hex[:8]
    start = clock()
    pending: list[tuple[float, int, Feedback]] = []  # (due, seq, feedback)
    ties: list[tuple[int, Feedback]] = []  # feedback of the requests sharing the current event time
    last_due = start
    sent = 0
    first_ts: int | None = None

    def release_ties() -> None:
        for seq, fb in ties:
            heapq.heappush(pending, (last_due + feedback_delay, seq, fb))
        ties.clear()

    def send_due(now: float) -> None:
        while pending and pending[0][0] <= now:
            due, _, fb = heapq.heappop(pending)
            fb = fb.model_copy(update={"sent_at": due})  # freshness: feedback-to-applied latency starts here
            producer.produce(names.TOPIC_FEEDBACK, key=str(fb.user_id), value=fb.encode())
            producer.poll(0)

    for rating in ratings:
        if limit is not None and sent >= limit:
            break
        first_ts = rating.event_ts if first_ts is None else first_ts
        if ties and ties[-1][1].event_ts != rating.event_ts:
            release_ties()
        due = start + pace.offset(sent, rating.event_ts, first_ts)
        while (now := clock()) < due:
            send_due(now)
            sleep(min(due - now, pending[0][0] - now if pending else due - now, 0.05))
        send_due(clock())
        request_id = f"{run}-{rating.user_id}-{rating.movie_id}-{rating.event_ts}"
        request = RatingRequest(
            request_id=request_id,
            user_id=rating.user_id,
            movie_id=rating.movie_id,
            event_ts=rating.event_ts,
            sent_at=due,
        )
        while True:
            try:
                producer.produce(names.TOPIC_REQUESTS, key=str(rating.user_id), value=request.encode())
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        feedback = Feedback(
            request_id=request_id,
            rating_id=rating_id(rating.user_id, rating.movie_id, rating.event_ts),
            user_id=rating.user_id,
            movie_id=rating.movie_id,
            rating=rating.rating,
            event_ts=rating.event_ts,
        )
        ties.append((sent, feedback))
        last_due = due
        sent += 1
        if on_progress and sent % 1000 == 0:
            on_progress(sent)
    release_ties()
    while pending:
        now = clock()
        send_due(now)
        if pending:
            sleep(min(max(pending[0][0] - now, 0.0), 0.05))
    producer.flush(60)
    return sent
