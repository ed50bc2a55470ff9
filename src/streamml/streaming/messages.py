"""Every message on the platform's topics: a pydantic model with ``schema_version``; keys are user ids."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamml.errors import PoisonMessageError

MAX_PAYLOAD_BYTES = 16 * 1024


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


class RatingRequest(Message):
    """A request to score (user, movie) at ``event_ts``; ``sent_at`` is the replayer's intended send time."""

    request_id: str = Field(min_length=1, max_length=128)
    user_id: int = Field(ge=0)
    movie_id: int = Field(ge=0)
    event_ts: int = Field(ge=0, description="Event time, unix seconds.")
    sent_at: float = Field(ge=0, description="Intended send time, unix seconds (open-loop latency origin).")


class Feedback(Message):
    """The true rating of a request, arriving later."""

    request_id: str = Field(min_length=1, max_length=128)
    user_id: int = Field(ge=0)
    movie_id: int = Field(ge=0)
    rating: float = Field(ge=0.5, le=5.0)
    event_ts: int = Field(ge=0)


class Prediction(Message):
    request_id: str
    user_id: int
    movie_id: int
    score: float
    label: int
    model_name: str
    model_version: str
    feature_version: int
    cold_start: bool
    event_ts: int
    sent_at: float
    scored_at: float


class DeadLetter(Message):
    """A message that can never be processed, with where it came from and why."""

    topic: str
    partition: int
    offset: int
    error_type: str
    error: str
    payload: str


# Why a message was refused, as a short fixed label (a metric label), read back from the text :func:`parse` wrote:
# the dead letter's ``error`` starts with the first three phrases; anything else names fields that failed validation.
POISON_REASONS = ("empty", "too_large", "invalid_json", "invalid_fields")


def parse(model: type[Message], payload: bytes | None) -> Message:
    """Decode one message or raise :class:`PoisonMessageError` saying why it can never be processed."""
    if payload is None:
        raise PoisonMessageError("empty payload (tombstone)")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PoisonMessageError(f"payload too large: {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        errors = exc.errors()
        if any(e["type"] == "json_invalid" for e in errors):
            raise PoisonMessageError(f"invalid JSON: {errors[0]['msg'].removeprefix('Invalid JSON: ')}") from None
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in errors[:5])
        raise PoisonMessageError(problems) from None


def poison_reason(error: str) -> str:
    """The :data:`POISON_REASONS` label of a refusal, from the error text :func:`parse` gave it."""
    if error.startswith("empty payload"):
        return "empty"
    if error.startswith("payload too large"):
        return "too_large"
    if error.startswith("invalid JSON"):
        return "invalid_json"
    return "invalid_fields"
