"""The compiled replay without Spark: one user rating movies nobody else rates, so the movie and global states each
row needs are simple sums, against the Python definition; and rows out of order are refused, not replayed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streamml.features import backfill, spec
from streamml.features.spec import FeatureState


def _one_user(seed: int, size: int = 60) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(1_000_000_000, 1_000_000_000 + 40, size))  # many ties
    movies = pd.DataFrame(
        {
            "movieId": np.arange(size),
            "title": [f"Movie {i} ({1950 + i})" if i % 3 else f"Movie {i}" for i in range(size)],
            "genres": ["|".join(rng.choice(spec.GENRES, rng.integers(0, 4), replace=False)) for _ in range(size)],
        }
    )
    ratings = pd.DataFrame(
        {
            "userId": 7,
            "movieId": np.arange(size),
            "rating": rng.integers(1, 11, size) / 2.0,
            "timestamp": seconds,
        }
    )
    return ratings, movies


def _inputs(ratings: pd.DataFrame, movies: pd.DataFrame) -> pd.DataFrame:
    """What Spark's windows give each row when every movie is rated once: no movie state, and global sums over the
    earlier seconds (``g_*``) or the earlier rows (``ga_*``)."""
    state = FeatureState.from_movies(movies)
    frame = ratings.copy()
    rating, like = frame["rating"], (frame["rating"] >= spec.LIKE_THRESHOLD).astype(np.int64)
    before = {"count": np.arange(len(frame)), "total": rating.cumsum() - rating, "likes": like.cumsum() - like}
    first = frame.groupby("timestamp").cumcount().to_numpy()  # rows of the same second before this one
    for name in ("count", "total", "likes"):
        frame[f"ga_{name}"] = np.asarray(before[name])
        frame[f"g_{name}"] = np.asarray(before[name])[np.arange(len(frame)) - first]
    for name in ("m_count", "m_likes", "ma_count", "ma_likes"):
        frame[name] = 0
    for name in ("m_total", "m_total_sq", "m_residual", "ma_total", backfill.RESIDUAL_AFTER):
        frame[name] = 0.0
    frame["m_first"] = backfill.NONE
    meta = [state.movies[int(movie)] for movie in frame["movieId"]]
    frame[backfill.GENRE_MASK] = [sum(1 << g for g in m.genres) for m in meta]
    frame["year"] = [backfill.NONE if m.year is None else m.year for m in meta]
    return frame


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_users_replay_equals_the_python_definition_bit_for_bit(seed: int) -> None:
    ratings, movies = _one_user(seed)
    expected = spec.point_in_time_features(FeatureState.from_movies(movies), ratings)
    frame = _inputs(ratings, movies)
    cutoff = int(ratings["timestamp"].iloc[len(ratings) // 2])
    batches = [frame.iloc[i : i + 9].reset_index(drop=True) for i in range(0, len(frame), 9)]
    out = pd.concat(list(backfill.replay(iter(batches), cutoff)), ignore_index=True)

    np.testing.assert_array_equal(out[list(spec.FEATURE_NAMES)].to_numpy(), expected)
    snapshot = out[out[backfill.SNAPSHOT_PREFIX + "count"].notna()]
    history = FeatureState.from_movies(movies)
    for row in ratings[ratings["timestamp"] < cutoff].itertuples():
        history.apply(row.userId, row.movieId, row.rating, row.timestamp)
    user = history.users[7]
    assert len(snapshot) == 1
    assert snapshot[backfill.SNAPSHOT_PREFIX + "count"].item() == user.count
    assert snapshot[backfill.SNAPSHOT_PREFIX + "recent"].item() == user.recent
    assert snapshot[backfill.SNAPSHOT_PREFIX + "genre_residual_total"].item() == user.genre_residual_total
    assert snapshot[backfill.SNAPSHOT_PREFIX + "line_xy"].item() == user.line_xy


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(timestamp=f["timestamp"][::-1].to_numpy()), "not sorted by timestamp"),
        (lambda f: pd.concat([f, f.assign(userId=3)], ignore_index=True), "not sorted by userId"),
    ],
)
def test_rows_out_of_order_are_refused(change: object, message: str) -> None:
    ratings, movies = _one_user(4)
    frame = change(_inputs(ratings.assign(timestamp=np.arange(len(ratings)) * 10), movies))  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        list(backfill.replay(iter([frame]), cutoff=10**12))
