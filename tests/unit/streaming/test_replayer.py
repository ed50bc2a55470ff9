"""The replayer's pacing and feedback timing, with a fake producer and a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from streamml import names
from streamml.streaming.messages import Feedback, RatingRequest
from streamml.streaming.replayer import Pace, Rating, send_ratings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1e-4)


class Recorder:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, str, Any]] = []

    def produce(self, topic: str, key: str, value: bytes) -> None:
        model = RatingRequest if topic == names.TOPIC_REQUESTS else Feedback
        self.sent.append((self.clock.now, topic, model.model_validate_json(value)))

    def poll(self, _: float) -> int:
        return 0

    def flush(self, _: float) -> int:
        return 0


def run(ratings: list[Rating], pace: Pace, delay: float, limit: int | None = None) -> list[tuple[float, str, Any]]:
    clock = FakeClock()
    producer = Recorder(clock)
    sent = send_ratings(
        ratings, producer, pace, feedback_delay=delay, run_id="t", limit=limit, clock=clock, sleep=clock.sleep
    )
    assert sent == sum(1 for _, topic, _ in producer.sent if topic == names.TOPIC_REQUESTS)
    return producer.sent


def test_open_loop_rate_stamps_intended_send_times_and_every_request_gets_its_feedback() -> None:
    ratings = [Rating(1, m, 4.0, 100 + m) for m in range(10)]
    out = run(ratings, Pace(rate=10), delay=0.05)
    requests = [msg for _, topic, msg in out if topic == names.TOPIC_REQUESTS]
    feedback = {msg.request_id: msg for _, topic, msg in out if topic == names.TOPIC_FEEDBACK}
    assert [r.sent_at - requests[0].sent_at for r in requests] == pytest.approx([i / 10 for i in range(10)])
    assert set(feedback) == {r.request_id for r in requests}
    assert all(feedback[r.request_id].rating == 4.0 for r in requests)


def test_feedback_waits_for_every_request_that_shares_its_event_time() -> None:
    # Three ratings at t=100, one at t=101: the first three's feedback comes after the third request, not before.
    ratings = [Rating(1, 1, 5.0, 100), Rating(2, 2, 3.0, 100), Rating(3, 3, 4.0, 100), Rating(4, 4, 2.0, 101)]
    out = run(ratings, Pace(rate=10), delay=0.05)
    order = [(topic, msg.movie_id) for _, topic, msg in out]
    last_tie_request = order.index((names.TOPIC_REQUESTS, 3))
    first_tie_feedback = min(order.index((names.TOPIC_FEEDBACK, m)) for m in (1, 2, 3))
    assert first_tie_feedback > last_tie_request
    # ... and before the next event time's request, because the delay is shorter than the gap between requests.
    assert max(order.index((names.TOPIC_FEEDBACK, m)) for m in (1, 2, 3)) < order.index((names.TOPIC_REQUESTS, 4))
    times = {(topic, msg.movie_id): t for t, topic, msg in out}
    assert times[(names.TOPIC_FEEDBACK, 1)] >= times[(names.TOPIC_REQUESTS, 3)] + 0.05


def test_limit_stops_early_and_still_sends_the_feedback_of_what_was_sent() -> None:
    out = run([Rating(1, m, 4.0, 100 + m) for m in range(10)], Pace(rate=100), delay=0.0, limit=4)
    assert sum(1 for _, topic, _ in out if topic == names.TOPIC_REQUESTS) == 4
    assert sum(1 for _, topic, _ in out if topic == names.TOPIC_FEEDBACK) == 4


def test_a_second_replay_has_new_request_ids_and_the_same_rating_ids() -> None:
    ratings = [Rating(7, m, 3.5, 100 + m) for m in range(5)]
    clock = FakeClock()
    first, second = Recorder(clock), Recorder(clock)
    send_ratings(ratings, first, Pace(rate=10), feedback_delay=0.05, run_id="a", clock=clock, sleep=clock.sleep)
    send_ratings(ratings, second, Pace(rate=10), feedback_delay=0.05, run_id="b", clock=clock, sleep=clock.sleep)
    fb_a = [m for _, topic, m in first.sent if topic == names.TOPIC_FEEDBACK]
    fb_b = [m for _, topic, m in second.sent if topic == names.TOPIC_FEEDBACK]
    assert [f.rating_id for f in fb_a] == [f.rating_id for f in fb_b] == [f"7:{m}:{100 + m}" for m in range(5)]
    assert not {f.request_id for f in fb_a} & {f.request_id for f in fb_b}
    # Each feedback carries when it was (meant to be) sent, the start of its feedback-to-applied latency.
    assert all(f.sent_at is not None and f.sent_at >= 1000.0 for f in fb_a + fb_b)


def test_drift_replaces_a_share_after_its_start_with_opposite_twins_reproducibly() -> None:
    from streamml.streaming.replayer import TWIN_OFFSET, Drift, Rating

    ratings = [Rating(u % 7, 100 + u, 0.5 + (u % 10) / 2, 1_000 + u) for u in range(2_000)]
    drift = Drift(start=500, kind="twins", share=0.5, seed=1)
    out = list(drift.apply(ratings))
    assert out[:500] == ratings[:500]
    twins = [(o, r) for o, r in zip(out[500:], ratings[500:], strict=True) if o != r]
    assert 0.45 < len(twins) / 1500 < 0.55
    for o, r in twins:
        assert (o.user_id, o.movie_id, o.rating, o.event_ts) == (
            r.user_id + TWIN_OFFSET,
            r.movie_id,
            5.5 - r.rating,
            r.event_ts,
        )
    assert list(drift.apply(ratings)) == out
    with pytest.raises(ValueError):
        Drift(start=0, share=0.0)


def test_genre_drift_turns_over_that_genres_ratings_only_after_its_start() -> None:
    from streamml.streaming.replayer import Drift, Rating

    ratings = [Rating(1, m, 4.0, 100 + i) for i, m in enumerate([1, 2, 1, 2, 1, 2])]
    out = list(Drift(start=2, genre="Drama").apply(ratings, genre_movies={2}))
    assert [r.rating for r in out] == [4.0, 4.0, 4.0, 1.5, 4.0, 1.5]
    assert [(r.user_id, r.movie_id, r.event_ts) for r in out] == [(r.user_id, r.movie_id, r.event_ts) for r in ratings]
