"""The bounds of every message and of the online state blobs: what is refused, with which reason, and what is kept."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import numpy as np
import pytest

from streamml.bounds import MAX_COUNT, MAX_ID, MAX_TIMESTAMP
from streamml.errors import DataValidationError, PoisonMessageError
from streamml.features import packing, spec
from streamml.streaming.messages import (
    MAX_PAYLOAD_BYTES,
    POISON_REASONS,
    DeadLetter,
    Feedback,
    Message,
    Prediction,
    RatingRequest,
    parse,
    rating_id,
)

REQUEST: dict[str, Any] = {"request_id": "r1", "user_id": 1, "movie_id": 2, "event_ts": 1_000, "sent_at": 1_001.5}
FEEDBACK: dict[str, Any] = {"request_id": "r1", "user_id": 1, "movie_id": 2, "rating": 4.5, "event_ts": 1_000}
PREDICTION: dict[str, Any] = {
    "request_id": "r1",
    "user_id": 1,
    "movie_id": 2,
    "score": 0.75,
    "label": 1,
    "model_name": "movielens-like",
    "model_version": "7",
    "feature_version": 3,
    "cold_start": False,
    "event_ts": 1_000,
    "sent_at": 1_001.5,
    "scored_at": 1_001.75,
    "features": [0.5] * spec.N_FEATURES,
    "globals_used": [10, 35.0, 5],
}
BASES: dict[type[Message], dict[str, Any]] = {RatingRequest: REQUEST, Feedback: FEEDBACK, Prediction: PREDICTION}
MODELS = list(BASES)
INT_FIELDS = {
    RatingRequest: ("user_id", "movie_id", "event_ts"),
    Feedback: ("user_id", "movie_id", "event_ts"),
    Prediction: ("user_id", "movie_id", "event_ts", "feature_version"),
}
FLOAT_FIELDS = {
    RatingRequest: ("sent_at",),
    Feedback: ("rating", "sent_at"),
    Prediction: ("score", "sent_at", "scored_at"),
}


def prediction(**changes: Any) -> Prediction:
    """A Prediction built in Python (strict: sequences must be tuples there, JSON arrays on the wire)."""
    fields = {**PREDICTION, **changes}
    return Prediction(
        **{**fields, "features": tuple(fields["features"]), "globals_used": tuple(fields["globals_used"])}
    )


def encode(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, allow_nan=True).encode()


def refusal(model: type[Message], payload: bytes | None) -> PoisonMessageError:
    with pytest.raises(PoisonMessageError) as info:
        parse(model, payload)
    assert info.value.reason in POISON_REASONS
    return info.value


def reason(model: type[Message], payload: bytes | None) -> str:
    return refusal(model, payload).reason


def with_field(model: type[Message], name: str, value: Any) -> bytes:
    return encode({**BASES[model], name: value})


@pytest.mark.parametrize("model", MODELS)
def test_the_base_messages_are_valid(model: type[Message]) -> None:
    assert isinstance(parse(model, encode(BASES[model])), model)


# Numbers out of bounds: out_of_range.


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("value", [9223372036854775808, 2**32, MAX_TIMESTAMP + 1, -1, 10**30, -(10**30)])
def test_event_ts_out_of_range(model: type[Message], value: int) -> None:
    error = refusal(model, with_field(model, "event_ts", value))
    assert error.reason == "out_of_range"
    assert "event_ts" in str(error)


@pytest.mark.parametrize("model", MODELS)
def test_event_ts_bounds_are_inclusive(model: type[Message]) -> None:
    for value in (0, MAX_TIMESTAMP):
        fields = {**BASES[model], "event_ts": value}
        assert parse(model, encode(fields)).event_ts == value  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", ["user_id", "movie_id"])
@pytest.mark.parametrize("value", [-1, 2**31, MAX_ID + 1, 2**63, 2**64, -(2**63) - 1])
def test_ids_out_of_range(model: type[Message], name: str, value: int) -> None:
    error = refusal(model, with_field(model, name, value))
    assert error.reason == "out_of_range"
    assert name in str(error)


@pytest.mark.parametrize("model", MODELS)
def test_id_bounds_are_inclusive(model: type[Message]) -> None:
    for value in (0, MAX_ID):
        fields = {**BASES[model], "user_id": value, "movie_id": value}
        message = parse(model, encode(fields))
        assert (message.user_id, message.movie_id) == (value, value)  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinite_literals_are_out_of_range(model: type[Message], value: float) -> None:
    for name in FLOAT_FIELDS[model]:
        payload = with_field(model, name, value)
        assert any(literal in payload for literal in (b"NaN", b"Infinity"))
        assert reason(model, payload) == "out_of_range", name


def test_nan_and_infinite_features_and_globals_are_out_of_range() -> None:
    for value in (math.nan, math.inf, -math.inf, 1e13):
        features = [0.0] * spec.N_FEATURES
        features[4] = value
        assert reason(Prediction, with_field(Prediction, "features", features)) == "out_of_range"
        assert reason(Prediction, with_field(Prediction, "globals_used", [1, value, 1])) == "out_of_range"


def test_a_feature_vector_of_the_wrong_length_is_refused() -> None:
    for length in (0, spec.N_FEATURES - 1, spec.N_FEATURES + 1):
        assert reason(Prediction, with_field(Prediction, "features", [0.0] * length)) == "out_of_range"


@pytest.mark.parametrize("value", [0.0, 5.5, 3.7, 0.25, -0.5, 4.999, 10.0, 1e308])
def test_ratings_off_the_half_star_scale_are_out_of_range(value: float) -> None:
    error = refusal(Feedback, with_field(Feedback, "rating", value))
    assert error.reason == "out_of_range"
    assert "rating" in str(error)


@pytest.mark.parametrize("value", [3.5000000001, 4.000000000000001, 0.5000000000000001, 4.999999999999999])
def test_ratings_just_off_a_half_star_are_out_of_range(value: float) -> None:
    # The sums of ratings must stay multiples of 0.25 (exact in float64: spec's Spark/Python parity); pydantic's
    # multiple_of accepts a relative error of 1e-9, so these pass the StarRating bound.
    assert reason(Feedback, with_field(Feedback, "rating", value)) == "out_of_range"


@pytest.mark.parametrize("value", [0.5, 1.0, 3.5, 5.0, 4])
def test_every_half_star_rating_is_accepted(value: float) -> None:
    assert parse(Feedback, with_field(Feedback, "rating", value)).rating == value  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", [-0.01, 1.01, math.nan])
def test_scores_outside_zero_one_are_out_of_range(value: float) -> None:
    assert reason(Prediction, with_field(Prediction, "score", value)) == "out_of_range"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("value", ["", "has space", "x" * 129, "caf\u00e9", "tab\there", "\u0000"])
def test_request_ids_must_be_short_printable_ascii(model: type[Message], value: str) -> None:
    assert reason(model, with_field(model, "request_id", value)) == "out_of_range"


# Wrong types and shapes: invalid_fields.


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("value", ["7", True, False, 7.0, 7.5, None, [7], {"v": 7}])
def test_ints_must_be_json_integers(model: type[Message], value: Any) -> None:
    for name in INT_FIELDS[model]:
        assert reason(model, with_field(model, name, value)) == "invalid_fields", (name, value)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("value", ["1.5", True, [1.5]])
def test_floats_must_be_json_numbers(model: type[Message], value: Any) -> None:
    for name in FLOAT_FIELDS[model]:
        assert reason(model, with_field(model, name, value)) == "invalid_fields", (name, value)


def test_label_and_cold_start_are_strict() -> None:
    assert reason(Prediction, with_field(Prediction, "label", 2)) == "out_of_range"
    assert reason(Prediction, with_field(Prediction, "label", "1")) == "invalid_fields"
    assert reason(Prediction, with_field(Prediction, "cold_start", 1)) == "invalid_fields"
    assert reason(Prediction, with_field(Prediction, "cold_start", "false")) == "invalid_fields"


@pytest.mark.parametrize("value", [True, False, 1.0, 0.0])
def test_label_refuses_bools_and_floats(value: Any) -> None:
    # "Fields are strict: true is not a number" (messages.py).
    assert reason(Prediction, with_field(Prediction, "label", value)) == "invalid_fields"


@pytest.mark.parametrize("model", MODELS)
def test_extra_fields_are_refused(model: type[Message]) -> None:
    error = refusal(model, with_field(model, "surprise", 1))
    assert error.reason == "invalid_fields"
    assert "surprise" in str(error)


@pytest.mark.parametrize("model", MODELS)
def test_missing_fields_and_other_schema_versions_are_refused(model: type[Message]) -> None:
    fields = dict(BASES[model])
    del fields["request_id"]
    assert reason(model, encode(fields)) == "invalid_fields"
    assert reason(model, with_field(model, "schema_version", 2)) == "invalid_fields"


def test_a_mix_of_range_and_type_problems_is_invalid_fields() -> None:
    assert reason(RatingRequest, encode({**REQUEST, "user_id": -1, "movie_id": "2"})) == "invalid_fields"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("payload", [b"[]", b'"x"', b"5", b"null", b"true", b"[1, 2]", b"{}", b"NaN", b"-Infinity"])
def test_json_that_is_not_a_message_object_is_invalid_fields(model: type[Message], payload: bytes) -> None:
    assert reason(model, payload) == "invalid_fields"


# Not JSON at all, too big, absent.


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe\xfa",  # not UTF-8
        b'{"request_id": "\xff"}',  # not UTF-8 inside a string
        b"\xc3\x28",  # an invalid two-byte sequence
        b"",
        b"   ",
        b"{not json",
        b'{"request_id": "r1",}',
        b"[" * 10_000,  # deeply nested and within the size bound
        b'{"request_id": ' + b"[" * 10_000,
        b"[" * 5_000 + b"]" * 5_000,
    ],
)
def test_bytes_that_are_not_json_are_invalid_json(model: type[Message], payload: bytes) -> None:
    assert reason(model, payload) == "invalid_json"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000,
        b"{" + b" " * MAX_PAYLOAD_BYTES + b"}",
        encode({**REQUEST, "request_id": "x" * (MAX_PAYLOAD_BYTES + 1)}),
        b"\xff" * (MAX_PAYLOAD_BYTES + 1),
    ],
)
def test_payloads_over_the_size_bound_are_too_large(model: type[Message], payload: bytes) -> None:
    error = refusal(model, payload)
    assert error.reason == "too_large"
    assert str(len(payload)) in str(error)


def test_the_size_bound_is_inclusive() -> None:
    fields = {**REQUEST, "request_id": "r"}
    payload = encode(fields)
    padded = payload[:-1] + b" " * (MAX_PAYLOAD_BYTES - len(payload)) + b"}"
    assert len(padded) == MAX_PAYLOAD_BYTES
    assert parse(RatingRequest, padded) == RatingRequest(**fields)
    assert reason(RatingRequest, padded[:-1] + b" }") == "too_large"


@pytest.mark.parametrize("model", MODELS)
def test_a_tombstone_is_empty(model: type[Message]) -> None:
    assert reason(model, None) == "empty"


# Feedback's rating id.


def test_feedback_derives_its_rating_id() -> None:
    feedback = parse(Feedback, encode(FEEDBACK))
    assert isinstance(feedback, Feedback)
    assert feedback.rating_id == "1:2:1000" == rating_id(1, 2, 1_000)
    assert Feedback(**FEEDBACK).rating_id == "1:2:1000"


def test_feedback_accepts_a_matching_rating_id_and_refuses_another() -> None:
    assert parse(Feedback, with_field(Feedback, "rating_id", "1:2:1000")) == Feedback(**FEEDBACK)
    for wrong in ("1:2:1001", "2:1:1000", "x", "1:2:1000 "):
        error = refusal(Feedback, with_field(Feedback, "rating_id", wrong))
        assert error.reason in ("invalid_fields", "out_of_range")
    assert reason(Feedback, with_field(Feedback, "rating_id", "1:2:1001")) == "invalid_fields"
    assert reason(Feedback, with_field(Feedback, "rating_id", 5)) == "invalid_fields"
    with pytest.raises(ValueError, match="rating_id"):
        Feedback(**FEEDBACK, rating_id="1:2:999")


def test_requests_of_the_same_rating_share_its_id() -> None:
    first = Feedback(**{**FEEDBACK, "request_id": "a"})
    second = Feedback(**{**FEEDBACK, "request_id": "b", "rating": 1.0})
    assert first.rating_id == second.rating_id
    assert first.rating_id != Feedback(**{**FEEDBACK, "event_ts": 1_001}).rating_id


# Round trips.


@pytest.mark.parametrize(
    "message",
    [
        RatingRequest(**REQUEST),
        RatingRequest(request_id="~" * 128, user_id=MAX_ID, movie_id=0, event_ts=MAX_TIMESTAMP, sent_at=0.0),
        Feedback(**FEEDBACK),
        Feedback(**{**FEEDBACK, "sent_at": 1_002.25, "rating": 0.5}),
        prediction(),
        prediction(score=0.0, label=0, cold_start=True, features=[-1e12] * spec.N_FEATURES, globals_used=[0, 0.0, 0]),
    ],
)
def test_valid_messages_round_trip(message: Message) -> None:
    payload = message.encode()
    assert b"NaN" not in payload and b"Infinity" not in payload
    again = parse(type(message), payload)
    assert again == message
    assert again.encode() == payload


def test_a_dead_letter_round_trips_and_carries_its_reason() -> None:
    letter = DeadLetter(
        topic="t", partition=1, offset=2, reason="out_of_range", error_type="PoisonMessageError", error="e", payload="p"
    )
    assert DeadLetter.model_validate_json(letter.encode()) == letter
    assert letter.reason in POISON_REASONS


def test_poison_reasons_are_distinct_labels() -> None:
    assert len(set(POISON_REASONS)) == len(POISON_REASONS) == 8
    assert all(label.isidentifier() for label in POISON_REASONS)


# Online state blobs.


BASE_USER = spec.UserState(
    count=4, total=14.0, total_sq=53.0, likes=2, last_ts=1_000, residual_total=0.5, last_rating=4.0,
    recent=[3.5] * spec.N_RECENT, half_stars=1, five_stars=1, low_ratings=0, residual_sq_total=0.5,
    residual_sq_recent=0.1, first_ts=900, line_x=0.2, line_xx=0.3, line_xy=0.1, line_y=0.4,
)  # fmt: skip
BASE_USER.genre_count[3], BASE_USER.genre_total[3] = 2, 8.0
BASE_MOVIE = spec.MovieState(
    genres=(3, 7), year=1999, count=4, total=14.0, total_sq=53.0, likes=2, residual_total=-0.5, first_ts=900
)


def forged(blob: bytes, layout: np.dtype, **changes: Any) -> bytes:
    """``blob`` with some fields of its record overwritten: any value the field's type can hold."""
    record = np.frombuffer(blob, dtype=layout).copy()
    for name, value in changes.items():
        if isinstance(value, tuple):  # (index, value) in a per-genre or moving-average field
            record[name][0][value[0]] = value[1]
        else:
            record[name] = value
    return record.tobytes()


def user_blob(**changes: Any) -> bytes:
    return forged(packing.pack_user(BASE_USER), packing.USER_LAYOUT, **changes)


def movie_blob(**changes: Any) -> bytes:
    return forged(packing.pack_movie(BASE_MOVIE), packing.MOVIE_LAYOUT, **changes)


def globals_blob(**changes: Any) -> bytes:
    return forged(packing.pack_globals(spec.GlobalState(10, 35.0, 5)), packing.GLOBALS_LAYOUT, **changes)


def test_the_base_blobs_are_valid() -> None:
    assert packing.unpack_user(user_blob()) == BASE_USER
    assert packing.unpack_movie(movie_blob()) == BASE_MOVIE
    assert packing.unpack_globals(globals_blob()) == spec.GlobalState(10, 35.0, 5)


BAD_FLOATS = [math.nan, math.inf, -math.inf, 1e300, -1e13, 1.0000001e12]
BAD_COUNTS = [-1, MAX_COUNT + 1, 2**63 - 1, -(2**63)]
BAD_TIMES = [-2, 2**32, MAX_TIMESTAMP + 1, 2**63 - 1, -(2**63)]
USER_FLOAT_FIELDS = [
    *("total", "total_sq", "residual_total", "residual_sq_total", "residual_sq_recent"),
    *("line_x", "line_xx", "line_xy", "line_y"),
]
USER_COUNT_FIELDS = ["count", "likes", "half_stars", "five_stars", "low_ratings"]
GENRE_FLOAT_FIELDS = ["genre_total", "genre_residual_recent", "genre_residual_total", "genre_like_recent"]


@pytest.mark.parametrize(
    "blob",
    [
        *(user_blob(**{name: v}) for name in USER_FLOAT_FIELDS for v in BAD_FLOATS),
        *(user_blob(last_rating=v) for v in BAD_FLOATS if not math.isnan(v)),  # NaN: no rating yet
        *(user_blob(**{name: v}) for name in USER_COUNT_FIELDS for v in BAD_COUNTS),
        *(user_blob(genre_count=(g, c)) for g in (0, 3, spec.N_GENRES - 1) for c in BAD_COUNTS),
        *(user_blob(**{name: (g, v)}) for name in GENRE_FLOAT_FIELDS for g in (0, 19) for v in BAD_FLOATS),
        *(user_blob(recent=(i, v)) for i in (0, spec.N_RECENT - 1) for v in BAD_FLOATS),
        *(user_blob(last_ts=v) for v in BAD_TIMES),
        *(user_blob(first_ts=v) for v in BAD_TIMES),
        user_blob(half_stars=5),  # more half stars than ratings
        user_blob(likes=5),  # more likes than ratings
        user_blob(residual_sq_total=-0.5),  # a negative sum of squares (sqrt of it in the features)
        user_blob(line_xx=-0.3),
        user_blob(format=2),
        user_blob(format=packing.STATE_FORMAT + 1),
        user_blob()[:-1],
        user_blob() + b"\x00",
        movie_blob(),  # another kind's record
    ],
)
def test_user_blobs_out_of_bounds_are_refused(blob: bytes) -> None:
    with pytest.raises(DataValidationError, match="user state blob"):
        packing.unpack_user(blob)


@pytest.mark.parametrize(
    "blob",
    [
        *(movie_blob(**{name: v}) for name in ("total", "total_sq", "residual_total") for v in BAD_FLOATS),
        *(movie_blob(**{name: v}) for name in ("count", "likes") for v in BAD_COUNTS),
        *(movie_blob(genres=v) for v in (1 << spec.N_GENRES, 2**32 - 1, 1 << 31)),
        *(movie_blob(year=v) for v in (-2, 10_000, 2**31 - 1, -(2**31))),
        *(movie_blob(first_ts=v) for v in BAD_TIMES),
        movie_blob(likes=5),  # more likes than ratings
        movie_blob(format=0),
        movie_blob()[:-1],
        globals_blob(),
    ],
)
def test_movie_blobs_out_of_bounds_are_refused(blob: bytes) -> None:
    with pytest.raises(DataValidationError, match="movie state blob"):
        packing.unpack_movie(blob)


@pytest.mark.parametrize(
    "blob",
    [
        *(globals_blob(total=v) for v in BAD_FLOATS),
        *(globals_blob(count=v) for v in BAD_COUNTS),
        *(globals_blob(likes=v) for v in BAD_COUNTS),
        globals_blob(format=1),
        globals_blob()[:-1],
    ],
)
def test_globals_blobs_out_of_bounds_are_refused(blob: bytes) -> None:
    with pytest.raises(DataValidationError, match="globals state blob"):
        packing.unpack_globals(blob)


UNPACKS = [packing.unpack_user, packing.unpack_movie, packing.unpack_globals]


@pytest.mark.parametrize("unpack", UNPACKS)
@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\xc1",
        b"\xff\x00garbage\x13",
        b"\x91" * 100_000,
        bytes(packing.USER_LAYOUT.itemsize * 2),  # two records' worth
        msgpack.packb([2, 0, 0.0, 0], use_bin_type=True),  # format 2 (msgpack)
        msgpack.packb(msgpack.ExtType(5, b"xyz")),
    ],
)
def test_blobs_that_are_not_state_records_are_refused(unpack: Any, blob: bytes) -> None:
    with pytest.raises(DataValidationError):
        unpack(blob)


def test_a_record_of_the_right_width_but_zero_format_is_refused_whatever_its_kind() -> None:
    for layout, unpack in zip(
        (packing.USER_LAYOUT, packing.MOVIE_LAYOUT, packing.GLOBALS_LAYOUT), UNPACKS, strict=True
    ):
        with pytest.raises(DataValidationError, match="format 0, this code reads"):
            unpack(bytes(layout.itemsize))


def test_packed_states_round_trip() -> None:
    state = spec.FeatureState.from_catalog([10, 11], ["A (1999)", "B"], ["Comedy|Drama", None])
    state.apply(1, 10, 5.0, 100)
    state.apply(1, 11, 2.5, 200)
    state.apply(2, 10, 0.5, MAX_TIMESTAMP)
    for user in (*state.users.values(), spec.UserState()):
        assert packing.unpack_user(packing.pack_user(user)) == user
    for movie in (*state.movies.values(), spec.MovieState(), spec.MovieState(tuple(range(spec.N_GENRES)), 0)):
        assert packing.unpack_movie(packing.pack_movie(movie)) == movie
    for sums in (state.globals, spec.GlobalState(), spec.GlobalState(MAX_COUNT, 1e12, MAX_COUNT)):
        assert packing.unpack_globals(packing.pack_globals(sums)) == sums
