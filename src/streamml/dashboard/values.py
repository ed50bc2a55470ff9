"""Lenient readers of the values the API returns: a table cell is ``None`` rather than an exception."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def number(value: Any) -> float | None:
    """``value`` as a float; ``None`` when it is missing, not a number or NaN."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(result) else result


def parse_time(value: Any) -> pd.Timestamp | None:
    """An ISO time or MLflow's epoch milliseconds (or seconds) as a UTC timestamp; ``None`` when unreadable."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return pd.Timestamp(value / 1000 if value > 1e11 else value, unit="s", tz="UTC")
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def version_key(version: str) -> tuple[int, str]:
    """Sort key of a registry version: numeric versions by number (``10`` after ``9``), anything else first."""
    return (int(version), "") if version.isdigit() else (-1, version)
