"""The Predict page's frames: the (user, movie) pairs a person types and the API's predictions as a table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from streamml.dashboard.labels import CLASS_LABELS

PREDICTION_COLUMNS = (
    "user_id", "movie_id", "score", "label", "cold_start", "model_name", "model_version", "feature_version",
)  # fmt: skip


def parse_pairs(text: str, limit: int = 100) -> list[dict[str, int]]:
    """``user_id, movie_id`` pairs, one a line (comma, space or tab between); blank lines and ``#`` comments are
    ignored. A bad line raises ``ValueError`` naming it."""
    items = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        parts = content.replace(",", " ").split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"line {lineno}: expected two non-negative integers 'user_id, movie_id', got {line!r}")
        items.append({"user_id": int(parts[0]), "movie_id": int(parts[1])})
    if len(items) > limit:
        raise ValueError(f"at most {limit} pairs per request, got {len(items)}")
    return items


def predictions_frame(predictions: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The API's predictions as :data:`PREDICTION_COLUMNS` (a missing field is empty), the label as its class."""
    frame = pd.DataFrame([dict(p) for p in predictions])
    for col in PREDICTION_COLUMNS:
        if col not in frame:
            frame[col] = None
    frame = frame[list(PREDICTION_COLUMNS)]
    frame["label"] = frame["label"].map(lambda v: CLASS_LABELS[int(v)] if v in (0, 1) else v)
    return frame
