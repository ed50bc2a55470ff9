from __future__ import annotations

import dataclasses

import msgpack
import numpy as np
import pytest

from streamml.data.movielens import sort_ratings, synthesize
from streamml.errors import DataValidationError
from streamml.features import packing, snapshot_rows, spec
from streamml.features.spec import (
    FEATURE_NAMES,
    FeatureState,
    GlobalState,
    MovieState,
    UserState,
    feature_matrix,
    features_from_states,
)

# Catalog: 10 = Action|Comedy (1995); 20 = Drama, no year; 30 = Comedy plus an unknown genre, "(2006-2007)".
CATALOG = (
    [10, 20, 30],
    ["Alpha (1995)", "Beta", "Gamma (2006\u20132007)"],
    ["Action|Comedy", "Drama", "Comedy|Unknown"],
)
# (user, movie, rating, ts); rows 0/1 and 3/4 share a timestamp.
ROWS = [
    (1, 10, 4.0, 100),
    (2, 10, 2.0, 100),
    (1, 20, 3.0, 200),
    (1, 30, 5.0, 300),
    (2, 30, 4.5, 300),
]


def _replay_tiny() -> tuple[FeatureState, np.ndarray]:
    state = FeatureState.from_catalog(*CATALOG)
    users, movies, ratings, stamps = (list(column) for column in zip(*ROWS, strict=True))
    return state, state.point_in_time(users, movies, ratings, stamps)


def _named(vector: np.ndarray | list[float]) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, (float(value) for value in vector), strict=True))


def _genres_on(named: dict[str, float]) -> set[str]:
    return {name for name in spec.GENRE_FEATURES if named[name] == 1.0}


def test_feature_names_are_unique_and_complete() -> None:
    assert (
        len(set(FEATURE_NAMES))
        == len(FEATURE_NAMES)
        == 13 + len(spec.GENRES) + 2 + 1 + 3 * len(spec.RECENCY_RATES) + 5 + 5 + 5 + 2
    )
    assert len(spec.GENRES) == 20
    assert "genre_sci_fi" in FEATURE_NAMES
    assert "genre_no_genres_listed" in FEATURE_NAMES
    assert spec.GENRE_FEATURES == spec.AGGREGATE_FEATURES[-20:]
    assert FEATURE_NAMES == spec.AGGREGATE_FEATURES + spec.SEQUENTIAL_FEATURES
    assert sum(len(family) for family in spec.FAMILIES.values()) == len(FEATURE_NAMES)


def test_parse_title_and_genres() -> None:
    assert spec.parse_year("Toy Story (1995)") == 1995
    assert spec.parse_year("Seven (a.k.a. Se7en) (1995) ") == 1995
    assert spec.parse_year("Death Note: Desu n\u00f4to (2006\u20132007)") == 2006
    assert spec.parse_year("Babylon 5") is None
    assert spec.parse_year("1984 (a film)") is None
    assert spec.parse_genres("Sci-Fi|Action|Action|Nope") == (0, spec.GENRE_INDEX["Sci-Fi"])
    assert spec.parse_genres("(no genres listed)") == (19,)
    assert spec.parse_genres("") == ()


def test_first_group_sees_nothing_and_ties_do_not_see_each_other() -> None:
    _, features = _replay_tiny()
    first, second = _named(features[0]), _named(features[1])
    for named in (first, second):
        assert named["user_count"] == 0.0
        assert named["movie_count"] == 0.0  # row 1 rates the same movie at the same second as row 0
        assert named["user_mean_shrunk"] == spec.PRIOR_MEAN
        assert named["movie_like_rate"] == spec.PRIOR_LIKE_RATE
        assert named["seconds_since_user_prev_rating"] == spec.NO_PREVIOUS_RATING
        assert named["movie_year"] == 1995.0
        assert named["movie_has_year"] == 1.0
        assert _genres_on(named) == {"genre_action", "genre_comedy"}
    # Rows 3 and 4 share ts=300 and movie 30: neither sees the other's rating of it.
    assert _named(features[3])["movie_count"] == _named(features[4])["movie_count"] == 0.0


def test_hand_computed_values() -> None:
    _, features = _replay_tiny()
    # Row 2 (user 1, movie 20, ts 200): earlier = rows 0, 1. Global mean (4+2)/2 = 3, like-rate 1/2.
    row = _named(features[2])
    expected = {
        "user_count": 1.0,
        "user_mean_shrunk": (4.0 + 5 * 3.0) / 6,
        "user_like_rate": (1 + 5 * 0.5) / 6,
        "user_rating_std": 0.0,
        "user_genre_affinity": (0.0 - 0 * 4.0) / 3.0,  # user 1 has no Drama rating yet
        "user_genre_share": 0.0,
        "seconds_since_user_prev_rating": 100.0,
        "movie_count": 0.0,
        "movie_mean_shrunk": 3.0,
        "movie_like_rate": 0.5,
        "movie_rating_std": 0.0,
        "movie_year": float(spec.DEFAULT_MOVIE_YEAR),
        "movie_has_year": 0.0,
    }
    assert {name: row[name] for name in expected} == pytest.approx(expected, abs=1e-12)
    assert _genres_on(row) == {"genre_drama"}

    # Row 3 (user 1, movie 30, ts 300): earlier = rows 0-2; global mean 9/3 = 3, like-rate 1/3.
    # User 1: ratings 4 (Action|Comedy), 3 (Drama): mean 3.5, std 0.5; Comedy count 1 total 4.
    row = _named(features[3])
    expected = {
        "user_count": 2.0,
        "user_mean_shrunk": (7.0 + 5 * 3.0) / 7,
        "user_like_rate": (1 + 5 / 3) / 7,
        "user_rating_std": 0.5,
        "user_genre_affinity": (4.0 - 1 * 3.5) / (1 + 3.0),
        "user_genre_share": 1 / 2,
        "seconds_since_user_prev_rating": 100.0,
        "movie_count": 0.0,
        "movie_mean_shrunk": 3.0,
        "movie_like_rate": 1 / 3,
        "movie_year": 2006.0,
        "movie_has_year": 1.0,
    }
    assert {name: row[name] for name in expected} == pytest.approx(expected, abs=1e-12)
    assert _genres_on(row) == {"genre_comedy"}  # the unknown genre is ignored
    # Its sequential families. Replay order: row 0 (movie 10 and the globals empty: both means 3.5, so residual
    # 4 - 3.5 = 0.5), row 1, row 2 (movie 20 empty, global mean (4 + 2) / 2 = 3: residual 3 - 3 = 0).
    # User 1's ratings 4 then 3 and likes 1 then 0; the first value sets each moving average.
    expected = {
        "user_residual_mean": (0.5 + 0.0) / (2 + 5),
        "movie_residual_mean": 0.0,  # movie 30 has no earlier rating
        "user_last_rating": 3.0,
        "user_recent_rating_r50": 0.5 * 4.0 + 0.5 * 3.0,
        "user_recent_rating_r03": 0.97 * 4.0 + 0.03 * 3.0,
        "user_recent_residual_r50": 0.5 * 0.5 + 0.5 * 0.0,
        "user_recent_like_r10": 0.9 * 1.0 + 0.1 * 0.0,
    }
    assert {name: row[name] for name in expected} == pytest.approx(expected, abs=1e-12)

    # Row 0 sees nothing: the sequential families take their priors.
    row = _named(features[0])
    expected = {"user_last_rating": spec.PRIOR_MEAN, "user_recent_like_r30": spec.PRIOR_LIKE_RATE}
    expected |= {"user_recent_residual_r10": 0.0, "user_residual_mean": 0.0, "movie_residual_mean": 0.0}
    assert {name: row[name] for name in expected} == pytest.approx(expected, abs=1e-12)

    # Row 4 (user 2, movie 30, ts 300): user 2 rated movie 10 with 2.0 at ts 100.
    row = _named(features[4])
    expected = {
        "user_count": 1.0,
        "user_mean_shrunk": (2.0 + 5 * 3.0) / 6,
        "user_like_rate": (0 + 5 / 3) / 6,
        "user_genre_affinity": 0.0,  # Comedy mean 2 equals the user's mean
        "user_genre_share": 1.0,
        "seconds_since_user_prev_rating": 200.0,
    }
    assert {name: row[name] for name in expected} == pytest.approx(expected, abs=1e-12)


def test_state_after_replay() -> None:
    state, _ = _replay_tiny()
    user = state.users[1]
    assert (user.count, user.total, user.total_sq, user.likes, user.last_ts) == (3, 12.0, 50.0, 2, 300)
    assert user.genre_count[spec.GENRE_INDEX["Comedy"]] == 2
    assert user.genre_total[spec.GENRE_INDEX["Comedy"]] == 9.0
    movie = state.movies[30]
    assert movie == MovieState(
        genres=(4,),
        year=2006,
        count=2,
        total=9.5,
        total_sq=45.25,
        likes=2,
        residual_total=movie.residual_total,
        first_ts=300,
    )
    # Rows 3 then 4 (one timestamp, applied in replay order), each against its user's shrunk mean just before:
    # user 1 (7 + 5 * 3) / 7 with the global mean 9 / 3; user 2 (2 + 5 * 3.5) / 6 with the global mean 14 / 4.
    assert movie.residual_total == pytest.approx((5.0 - 22 / 7) + (4.5 - 19.5 / 6), abs=1e-12)
    assert state.globals == GlobalState(count=5, total=18.5, likes=3)


def test_replay_rejects_unsorted_rows() -> None:
    state = FeatureState.from_catalog(*CATALOG)
    with pytest.raises(ValueError, match="non-decreasing"):
        state.point_in_time([1, 1], [10, 20], [4.0, 3.0], [200, 100])


def test_apply_tracks_movies_missing_from_the_catalog() -> None:
    state = FeatureState.from_catalog(*CATALOG)
    state.apply(7, 999, 4.5, 50)
    # residual 4.5 - 3.5: the first rating anywhere, against the prior mean
    assert state.movies[999] == MovieState(count=1, total=4.5, total_sq=20.25, likes=1, residual_total=1.0, first_ts=50)
    assert state.users[7].genre_count == [0] * spec.N_GENRES


def test_cold_start_priors() -> None:
    empty = GlobalState()
    vector, cold = features_from_states(None, None, empty, 1_000)
    named = _named(vector)
    assert cold
    assert named["user_mean_shrunk"] == named["movie_mean_shrunk"] == spec.PRIOR_MEAN
    assert named["user_like_rate"] == named["movie_like_rate"] == spec.PRIOR_LIKE_RATE
    assert named["movie_year"] == spec.DEFAULT_MOVIE_YEAR
    assert named["movie_has_year"] == 0.0
    assert named["seconds_since_user_prev_rating"] == spec.NO_PREVIOUS_RATING
    assert _genres_on(named) == set()

    # With history, the priors are the global mean and like-rate of everything earlier.
    seen = GlobalState(count=4, total=14.0, likes=3)
    named = _named(features_from_states(None, MovieState(genres=(7,), year=2001), seen, 1_000)[0])
    assert named["user_mean_shrunk"] == named["movie_mean_shrunk"] == 3.5
    assert named["user_like_rate"] == named["movie_like_rate"] == 0.75
    assert named["movie_year"] == 2001.0
    assert _genres_on(named) == {"genre_drama"}

    warm_user = UserState(count=2, total=8.0, total_sq=32.0, likes=2, last_ts=900)
    warm_movie = MovieState(genres=(7,), count=1, total=4.0, total_sq=16.0, likes=1)
    assert features_from_states(warm_user, warm_movie, seen, 1_000)[1] is False
    assert features_from_states(warm_user, None, seen, 1_000)[1] is True
    assert features_from_states(None, warm_movie, seen, 1_000)[1] is True


def test_pack_unpack_roundtrip() -> None:
    state, _ = _replay_tiny()
    for user in state.users.values():
        assert packing.unpack_user(packing.pack_user(user)) == user
    for movie in state.movies.values():
        assert packing.unpack_movie(packing.pack_movie(movie)) == movie
    assert packing.unpack_globals(packing.pack_globals(state.globals)) == state.globals
    assert packing.unpack_user(packing.pack_user(UserState())) == UserState()
    assert packing.unpack_movie(packing.pack_movie(MovieState())) == MovieState()
    # fixed width: every user is one record of the layout, whatever its history
    assert {len(packing.pack_user(u)) for u in [*state.users.values(), UserState()]} == {packing.USER_LAYOUT.itemsize}


def test_the_layouts_hold_the_state_fields_in_order() -> None:
    assert packing.USER_LAYOUT.names == ("format", *(f.name for f in dataclasses.fields(UserState)))
    assert packing.MOVIE_LAYOUT.names == ("format", *(f.name for f in dataclasses.fields(MovieState)))
    assert packing.GLOBALS_LAYOUT.names == ("format", *(f.name for f in dataclasses.fields(GlobalState)))
    blob = packing.pack_movie(MovieState(genres=(0, 7, 19), year=1995, count=2, first_ts=5))
    record = np.frombuffer(blob, dtype=packing.MOVIE_LAYOUT)[0]
    assert record["format"] == packing.STATE_FORMAT and record["genres"] == 1 | 1 << 7 | 1 << 19
    assert blob[:2] == packing.STATE_FORMAT.to_bytes(2, "little")


def _with(blob: bytes, layout: np.dtype, **values: object) -> bytes:
    record = np.frombuffer(blob, dtype=layout).copy()
    for name, value in values.items():
        record[name] = value
    return record.tobytes()


_USER = packing.pack_user(UserState(count=2, total=8.0, total_sq=32.0, likes=2, last_ts=900, first_ts=800))


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"\xc1", "1 bytes, not the 1034"),
        (msgpack.packb([2, 1, 2.0, 4.0, 1, 5, []]), "not the 1034 of state format 3"),  # format 2 (msgpack)
        (_USER + b"\x00", "1035 bytes"),
        (_with(_USER, packing.USER_LAYOUT, format=2), "format 2, this code reads 3"),
        (_with(_USER, packing.USER_LAYOUT, count=-1), "count -1 is not in 0..2\\*\\*53"),
        (_with(_USER, packing.USER_LAYOUT, count=2**60), "count"),
        (_with(_USER, packing.USER_LAYOUT, last_ts=-2), "last_ts -2 is not a unix time"),
        (_with(_USER, packing.USER_LAYOUT, first_ts=2**40), "first_ts"),
        (_with(_USER, packing.USER_LAYOUT, total=float("nan")), "total nan is not finite"),
        (_with(_USER, packing.USER_LAYOUT, line_y=float("-inf")), "line_y -inf"),
        (_with(_USER, packing.USER_LAYOUT, last_rating=float("inf")), "last_rating inf"),
        (_with(_USER, packing.USER_LAYOUT, recent=1e13), "recent"),
        (_with(_USER, packing.USER_LAYOUT, genre_count=-3), "genre_count"),
        (_with(_USER, packing.USER_LAYOUT, residual_sq_total=-1.0), "residual_sq_total -1.0 is negative"),
        (_with(_USER, packing.USER_LAYOUT, likes=3), "more likes or star counts than ratings"),
        (_with(_USER, packing.USER_LAYOUT, five_stars=3), "more likes or star counts than ratings"),
    ],
)
def test_unpack_refuses_blobs_outside_the_layout_or_its_bounds(blob: bytes, reason: str) -> None:
    with pytest.raises(DataValidationError, match=f"user state blob: .*{reason}"):
        packing.unpack_user(blob)


_MOVIE = packing.pack_movie(MovieState(genres=(1,), year=1999, count=1, total=4.0, total_sq=16.0, likes=1))


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"genres": 1 << 20}, "genre mask 0x100000 has bits past 20"),
        ({"year": 10_000}, "year 10000"),
        ({"year": -2}, "year -2"),
        ({"likes": 2}, "more likes than ratings"),
        ({"residual_total": float("nan")}, "residual_total nan"),
    ],
)
def test_unpack_refuses_movie_blobs_outside_their_bounds(values: dict[str, object], reason: str) -> None:
    with pytest.raises(DataValidationError, match=f"movie state blob: {reason}"):
        packing.unpack_movie(_with(_MOVIE, packing.MOVIE_LAYOUT, **values))


def test_a_batch_decodes_in_one_call_and_refuses_only_its_bad_blobs() -> None:
    state, _ = _replay_tiny()
    users = list(state.users.values())
    blobs = [*packing.pack_users(users), None, b"junk", _with(_USER, packing.USER_LAYOUT, count=-1)]
    decoded = packing.decode_users(blobs)
    assert sorted(decoded.errors) == [len(users) + 1, len(users) + 2]
    states = packing.users_from_records(decoded.records)
    assert states[: len(users)] == users
    assert states[len(users) :] == [UserState()] * 3  # none, and the refused ones, read as the empty state


def test_feature_matrix_equals_per_row_features() -> None:
    ratings, movies = synthesize(n_ratings=1500, n_users=60, n_movies=200, seed=5)
    state = FeatureState.from_movies(movies)
    spec.point_in_time_features(state, sort_ratings(ratings))
    rng = np.random.default_rng(0)
    user_ids = [*state.users, -1]
    movie_ids = [*state.movies, -1]
    batch_users = [state.users.get(user_ids[i]) for i in rng.integers(0, len(user_ids), 300)]
    batch_movies = [state.movies.get(movie_ids[i]) for i in rng.integers(0, len(movie_ids), 300)]
    stamps = rng.integers(1_500_000_000, 1_600_000_000, 300)

    matrix = feature_matrix(batch_users, batch_movies, state.globals, stamps)
    rows = [
        features_from_states(u, m, state.globals, int(t))
        for u, m, t in zip(batch_users, batch_movies, stamps, strict=True)
    ]
    assert matrix.shape == (300, len(FEATURE_NAMES))
    np.testing.assert_allclose(matrix, np.array([vector for vector, _ in rows]), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(spec.cold_start_mask(matrix), [cold for _, cold in rows])
    assert any(cold for _, cold in rows) and not all(cold for _, cold in rows)
    assert feature_matrix([], [], state.globals, []).shape == (0, len(FEATURE_NAMES))


def test_snapshot_parts_are_packed_by_column_and_a_bad_row_is_refused_naming_part_and_row() -> None:
    import pyarrow as pa

    from streamml.features.materialize import snapshot_blobs

    user = UserState(count=1, total=4.0, total_sq=16.0, likes=1, last_ts=5, first_ts=5, last_rating=4.0)
    user.genre_count[7], user.genre_total[7] = 1, 4.0
    columns = {"userId": pa.array(range(1, 11), pa.int64())}
    for name in snapshot_rows.USER_STATE_SCHEMA:
        columns[name] = pa.array([getattr(user, name)] * 10)
    columns["last_rating"] = pa.array([4.0] * 9 + [None])  # a null is the layout's absent value
    table = pa.table(columns)
    blobs = dict(snapshot_blobs(table, "users", batch_rows=4))
    assert blobs == {i: packing.pack_user(user) for i in range(1, 10)} | {10: packing.pack_user(
        dataclasses.replace(user, last_rating=None)
    )}  # fmt: skip

    too_many = table.set_column(table.schema.get_field_index("likes"), "likes", pa.array([1] * 8 + [3, 1]))
    with pytest.raises(DataValidationError, match="part users, row 8: user state more likes or star counts"):
        list(snapshot_blobs(too_many, "users", batch_rows=4))
    short = table.set_column(
        table.schema.get_field_index("genre_count"), "genre_count", pa.array([[0] * 20] * 5 + [[0] * 19] * 5)
    )
    with pytest.raises(DataValidationError, match="part users, row 5: genre_count holds 19 values, not 20"):
        list(snapshot_blobs(short, "users", batch_rows=4))
