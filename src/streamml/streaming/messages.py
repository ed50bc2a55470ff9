"""Every message on the platform's topics: a pydantic model with ``schema_version``; keys are user ids.

Every field uses the bounds of :mod:`streamml.bounds` (the API bodies and the online state blobs too). Fields are
strict: ``"7"`` is not a user id and ``true`` is not a number. A message that breaks a bound is refused with the
reason ``out_of_range``, before any code that could overflow, divide or pack it runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streamml.bounds import Count, FeatureValue, Id, Instant, Probability, StarRating, Text, Timestamp
from streamml.errors import PoisonMessageError
from streamml.features.spec import N_FEATURES

MAX_PAYLOAD_BYTES = 16 * 1024


def rating_id(user_id: int, movie_id: int, event_ts: int) -> str:
    """The identity of a rating event: the same (user, movie, event time) is the same rating, whoever sends it and
    however often; the feature updater applies each rating id once."""
    return f"{user_id}:{movie_id}:{event_ts}"


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    schema_version: Literal[1] = 1

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


class RatingRequest(Message):
    """A request to score (user, movie) at ``event_ts``; ``sent_at`` is the replayer's intended send time."""

    request_id: Text
    user_id: Id
    movie_id: Id
    event_ts: Timestamp = Field(description="Event time, unix seconds.")
    sent_at: Instant = Field(description="Intended send time, unix seconds (open-loop latency origin).")


class Feedback(Message):
    """The true rating of a request, arriving later. ``rating_id`` is derived from (user, movie, event time) when
    absent and must match it when given; ``sent_at`` (optional) is when the feedback was sent, for freshness."""

    request_id: Text
    rating_id: Text
    user_id: Id
    movie_id: Id
    rating: StarRating
    event_ts: Timestamp
    sent_at: Instant | None = None

    @model_validator(mode="before")
    @classmethod
    def _derive_rating_id(cls, data: Any) -> Any:
        """Derive ``rating_id`` from the fields, or check a given one against them. Fields that are not all ints
        fail their own (strict) validation, so a ``rating_id`` beside them needs no check."""
        if isinstance(data, dict):
            user, movie, ts = data.get("user_id"), data.get("movie_id"), data.get("event_ts")
            if type(user) is int and type(movie) is int and type(ts) is int:
                derived = rating_id(user, movie, ts)
                if "rating_id" not in data:
                    return {**data, "rating_id": derived}
                if data["rating_id"] != derived:
                    raise ValueError("rating_id must be user_id:movie_id:event_ts")
        return data


class Prediction(Message):
    """A scored request with what it was scored with (the served-feature log): the feature vector (in
    ``features.spec.FEATURE_NAMES`` order), the global sums it was built with (count, total, likes; every other input
    is the user's and the movie's state, whose counts are in the vector), the feature version and the model version."""

    request_id: Text
    user_id: Id
    movie_id: Id
    score: Probability
    label: Annotated[int, Field(ge=0, le=1)]
    model_name: Text
    model_version: Text
    feature_version: Count
    cold_start: bool
    event_ts: Timestamp
    sent_at: Instant
    scored_at: Instant
    features: tuple[FeatureValue, ...] = Field(min_length=N_FEATURES, max_length=N_FEATURES)
    globals_used: tuple[Count, FeatureValue, Count]


class ShadowPrediction(Message):
    """The challenger's score of a request the champion scored, on the same features in the same batch
    (``predictions.shadow.v1``); never a result (``pred:{id}`` holds only the champion's)."""

    request_id: Text
    user_id: Id
    movie_id: Id
    score: Probability
    model_name: Text
    model_version: Text
    champion_version: Text
    feature_version: Count
    event_ts: Timestamp
    scored_at: Instant


class DeadLetter(Message):
    """A message that can never be processed, with where it came from and why (``reason``: a
    :data:`POISON_REASONS` label)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str
    partition: int
    offset: int
    reason: str
    error_type: str
    error: str
    payload: str


POISON_REASONS = (
    "empty",  # a tombstone
    "too_large",  # over MAX_PAYLOAD_BYTES
    "invalid_json",  # not JSON (or not UTF-8)
    "invalid_fields",  # JSON, but missing, extra or wrongly typed fields
    "out_of_range",  # a field outside its bounds (ids, times, ratings, NaN or infinite floats, long strings)
    "bad_feature_blob",  # the online state of the request's user, movie or the globals cannot be read
    "scoring_error",  # the model refused the row or gave a non-finite score
    "handler_error",  # the handler failed on this message alone for another reason (a bug: see the error text)
)
"""Why a message was refused: a short fixed label (a metric label and the dead letter's ``reason``)."""

_RANGE_ERRORS = frozenset(
    {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "finite_number",
        "multiple_of",
        "string_too_long",
        "string_too_short",
        "string_pattern_mismatch",
        "too_long",
        "too_short",
        "int_parsing_size",
    }
)


def parse(model: type[Message], payload: bytes | None) -> Message:
    """Decode one message or raise :class:`PoisonMessageError` saying why it can never be processed."""
    if payload is None:
        raise PoisonMessageError("empty payload (tombstone)", reason="empty")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PoisonMessageError(
            f"payload too large: {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}", reason="too_large"
        )
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(e["type"] in ("json_invalid", "json_type") for e in errors):
            text = str(errors[0]["msg"]).removeprefix("Invalid JSON: ")
            raise PoisonMessageError(f"invalid JSON: {text}", reason="invalid_json") from None
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in errors[:5])
        reason = "out_of_range" if all(e["type"] in _RANGE_ERRORS for e in errors) else "invalid_fields"
        raise PoisonMessageError(problems, reason=reason) from None
