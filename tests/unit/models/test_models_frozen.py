"""FROZEN-mode features: built from the cutoff snapshot, at each stream row's own timestamp."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streamml.data.movielens import synthesize, time_split
from streamml.features import snapshot_rows, spec
from streamml.features.spec import FEATURE_NAMES, FeatureState, GlobalState, MovieState, UserState
from streamml.models import evaluate as ev
from streamml.models.dataset import dataset_from_ratings

GENRE_ACTION = spec.GENRE_INDEX["Action"]
GENRE_DRAMA = spec.GENRE_INDEX["Drama"]


def _user_row(user_id: int, state: UserState) -> dict[str, object]:
    return {
        "userId": user_id,
        **{name: _copy(getattr(state, name)) for name in snapshot_rows.USER_STATE_SCHEMA},
    }


def _copy(value: object) -> object:
    return list(value) if isinstance(value, list) else value


def _movie_row(movie_id: int, state: MovieState) -> dict[str, object]:
    return {
        "movieId": movie_id,
        "genres": list(state.genres),
        "year": state.year,
        "count": state.count,
        "total": state.total,
        "total_sq": state.total_sq,
        "likes": state.likes,
        **{name: getattr(state, name) for name in snapshot_rows.SEQUENTIAL_MOVIE_COLUMNS},
    }


def _snapshot() -> tuple[dict[int, UserState], dict[int, MovieState], GlobalState]:
    user = UserState()
    user.apply(5.0, 1_000, (GENRE_ACTION,), 0.75)
    user.apply(2.0, 1_500, (GENRE_DRAMA,), -1.25)
    movie = MovieState(genres=(GENRE_ACTION,), year=1995)
    movie.apply(4.5, 0.5)
    unrated = MovieState(genres=(GENRE_DRAMA,), year=None)
    return {7: user}, {10: movie, 20: unrated}, GlobalState(count=3, total=11.5, likes=2)


def test_frozen_matrix_from_snapshot_rows_equals_the_states_features_at_each_rows_time() -> None:
    users, movies, globals_ = _snapshot()
    states = ev.snapshot_states(
        [_user_row(uid, state) for uid, state in users.items()],
        [_movie_row(mid, state) for mid, state in movies.items()],
        {"count": globals_.count, "total": globals_.total, "likes": globals_.likes},
    )
    # Known user on a known movie twice (later time), known user on an unrated movie, an unknown user, an unknown movie.
    user_ids, movie_ids, stamps = [7, 7, 7, 99, 7], [10, 10, 20, 10, 555], [2_000, 9_000, 2_000, 2_000, 2_000]
    frozen = ev.frozen_features(*states, user_ids, movie_ids, stamps)
    assert frozen.shape == (5, spec.N_FEATURES)
    for row, (user_id, movie_id, ts) in enumerate(zip(user_ids, movie_ids, stamps, strict=True)):
        expected, _ = spec.features_from_states(users.get(user_id), movies.get(movie_id), globals_, ts)
        np.testing.assert_array_equal(frozen[row], expected)

    named = [dict(zip(FEATURE_NAMES, row, strict=True)) for row in frozen]
    assert named[0]["user_count"] == 2.0 and named[0]["movie_count"] == 1.0
    assert named[0]["seconds_since_user_prev_rating"] == 500.0  # the row's own timestamp, not the cutoff
    assert named[1]["seconds_since_user_prev_rating"] == 7_500.0
    assert named[2]["movie_count"] == 0.0 and named[2]["movie_has_year"] == 0.0
    assert named[3]["user_count"] == 0.0  # never seen before the cutoff: the priors
    assert named[3]["user_like_rate"] == pytest.approx(globals_.like_rate)
    assert named[3]["seconds_since_user_prev_rating"] == spec.NO_PREVIOUS_RATING
    assert named[4]["movie_count"] == 0.0 and named[4]["movie_year"] == spec.DEFAULT_MOVIE_YEAR


def test_dataset_from_ratings_freezes_the_stream_at_the_cutoff_and_streams_it_point_in_time() -> None:
    ratings, movies = synthesize(n_ratings=1500, n_users=40, n_movies=200, seed=3)
    dataset = dataset_from_ratings(ratings, movies, quantile=0.7)
    history, stream, _ = time_split(ratings, 0.7)
    assert len(dataset.train_labels) == len(history) and len(dataset.stream.labels) == len(stream)
    assert dataset.stream.history_like_rate == pytest.approx((history["rating"] >= 4.0).mean())

    cutoff_state = FeatureState.from_movies(movies)
    spec.point_in_time_features(cutoff_state, history)
    full_state = FeatureState.from_movies(movies)
    everything = spec.point_in_time_features(full_state, pd.concat([history, stream], ignore_index=True))
    assert len(everything) == len(ratings)

    frozen = dataset.stream.features[ev.FROZEN]
    streaming = dataset.stream.features[ev.STREAMING]
    for row in range(0, len(stream), 37):
        user_id, movie_id, ts = (int(stream.iloc[row][c]) for c in ("userId", "movieId", "timestamp"))
        np.testing.assert_array_equal(frozen[row], cutoff_state.features(user_id, movie_id, ts))
    np.testing.assert_array_equal(streaming, everything[len(history) :])
    np.testing.assert_array_equal(dataset.train_features, everything[: len(history)])
    # The stream's first timestamp sees nothing of the stream, so both modes agree there; later rows differ.
    first = stream["timestamp"].to_numpy() == stream["timestamp"].iloc[0]
    np.testing.assert_array_equal(frozen[first], streaming[first])
    assert not np.array_equal(frozen, streaming)
    user_count = FEATURE_NAMES.index("user_count")
    assert (frozen[:, user_count] <= streaming[:, user_count]).all()
