"""The bounds of every value the platform accepts from outside, defined once.

Messages (:mod:`streamml.streaming.messages`), API bodies and the online state blobs (:mod:`streamml.features.spec`)
use these: ids are ``0..2**31-1``, event times are unix seconds in ``0..MAX_TIMESTAMP``, every float is finite,
ratings are ``0.5..5.0`` in steps of 0.5, strings are short printable ASCII.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

MAX_ID = 2**31 - 1
"""The largest user or movie id (a signed 32-bit int, as in MovieLens and in Spark's schema)."""
MAX_TIMESTAMP = 2**32 - 1
"""The latest event or send time, unix seconds (year 2106); far below where int64 arithmetic could overflow."""
MAX_FEATURE_MAGNITUDE = 1e12
"""No feature value is larger than this in magnitude (counts, seconds, years and means all are)."""

Id = Annotated[int, Field(ge=0, le=MAX_ID)]
Timestamp = Annotated[int, Field(ge=0, le=MAX_TIMESTAMP, description="Unix seconds.")]
Instant = Annotated[float, Field(ge=0, le=MAX_TIMESTAMP, allow_inf_nan=False, description="Unix seconds.")]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def _half_star(value: float) -> float:
    # Exactly a multiple of 0.5 (pydantic's multiple_of has a tolerance): rating sums stay exact in float64.
    if value * 2 != int(value * 2):
        raise PydanticCustomError("multiple_of", "Input should be a multiple of 0.5")
    return value


StarRating = Annotated[float, Field(ge=0.5, le=5.0, allow_inf_nan=False), AfterValidator(_half_star)]
FeatureValue = Annotated[float, Field(ge=-MAX_FEATURE_MAGNITUDE, le=MAX_FEATURE_MAGNITUDE, allow_inf_nan=False)]
Text = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
"""An identifier: 1 to 128 printable ASCII characters, no spaces."""
MAX_COUNT = 2**53
"""The largest count (of ratings, likes, a version) a state or message may hold: exact in float64."""
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
