"""A model version's reference profile: how its training features and scores were distributed, and PSI against it.

Each feature (and the score) gets at most :data:`BINS` bins cut at the training quantiles, so each bin holds about
the same share of training rows; a value sits in bin ``i`` when ``edges[i-1] < value <= edges[i]`` (the first and
last bins are open). A feature with a point mass (a sentinel, a count that is often 0) gets fewer bins. The profile
is a small JSON document logged with the model (:data:`PROFILE_ARTIFACT`) and read back by the drift monitor.

PSI (population stability index) of live shares ``a`` against reference shares ``e`` is
``sum((a - e) * ln(a / e))`` with both floored at :data:`PSI_FLOOR`; the usual reading is < 0.1 stable,
0.1-0.25 a moderate shift, > 0.25 a major one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PROFILE_ARTIFACT = "reference_profile.json"
PROFILE_FORMAT = 1
BINS = 10
PSI_FLOOR = 1e-4
"""Shares below this count as this in PSI (an empty bin would otherwise make it infinite)."""


@dataclass(frozen=True)
class Histogram:
    """Bins cut at ``edges`` (ascending, interior cut points) and the reference share of each bin."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.shares) != len(self.edges) + 1:
            raise ValueError(f"{len(self.edges)} edges need {len(self.edges) + 1} shares, got {len(self.shares)}")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("histogram edges must be strictly ascending")

    @classmethod
    def of(cls, values: np.ndarray, bins: int = BINS) -> Histogram:
        """Cut ``values`` at their quantiles into at most ``bins`` bins (non-finite values are left out)."""
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return cls((), (1.0,))
        quantiles = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
        edges = np.unique(quantiles)
        edges = edges[edges < values.max()]  # a cut at the maximum would leave the last bin empty
        histogram = cls(tuple(float(e) for e in edges), (0.0,) * (len(edges) + 1))
        return cls(histogram.edges, tuple(float(s) for s in histogram.shares_of(values)))

    def counts(self, values: np.ndarray) -> np.ndarray:
        """How many of the finite ``values`` fall in each bin."""
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        index = np.searchsorted(np.asarray(self.edges, dtype=np.float64), values, side="left")
        return np.bincount(index, minlength=len(self.shares))

    def shares_of(self, values: np.ndarray) -> np.ndarray:
        """The share of the finite ``values`` in each bin (all zero when there are none)."""
        counts = self.counts(values).astype(np.float64)
        total = counts.sum()
        return counts / total if total > 0 else counts

    def psi(self, values: np.ndarray) -> float | None:
        """PSI of ``values`` against this reference; None without a finite value."""
        live = self.shares_of(values)
        return psi(np.asarray(self.shares), live) if live.sum() > 0 else None

    def as_dict(self) -> dict[str, list[float]]:
        return {"edges": list(self.edges), "shares": list(self.shares)}


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index of ``actual`` shares against ``expected`` shares (same bins)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    a = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class ReferenceProfile:
    """Per-feature histograms of the training features, the histogram of the training scores, the like rate."""

    features: dict[str, Histogram]
    score: Histogram
    like_rate: float
    rows: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": PROFILE_FORMAT,
                "rows": self.rows,
                "like_rate": self.like_rate,
                "score": self.score.as_dict(),
                "features": {name: h.as_dict() for name, h in self.features.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ReferenceProfile:
        """Read a profile; raises ValueError on anything that is not one."""
        try:
            doc: Any = json.loads(text)
            if doc.get("format") != PROFILE_FORMAT:
                raise ValueError(f"profile format {doc.get('format')!r}, expected {PROFILE_FORMAT}")
            like_rate = float(doc["like_rate"])
            if not 0.0 <= like_rate <= 1.0:
                raise ValueError(f"like rate {like_rate} outside [0, 1]")
            return cls(
                features={str(name): _histogram(h) for name, h in doc["features"].items()},
                score=_histogram(doc["score"]),
                like_rate=like_rate,
                rows=int(doc["rows"]),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a reference profile: {exc}") from exc


def _histogram(doc: dict[str, Any]) -> Histogram:
    edges = tuple(float(e) for e in doc["edges"])
    shares = tuple(float(s) for s in doc["shares"])
    if not all(math.isfinite(v) for v in edges + shares) or any(s < 0 for s in shares):
        raise ValueError("histogram edges and shares must be finite, shares >= 0")
    return Histogram(edges, shares)


def build(
    features: np.ndarray, feature_names: Sequence[str], scores: np.ndarray, labels: np.ndarray, bins: int = BINS
) -> ReferenceProfile:
    """The profile of a training matrix (rows x ``feature_names``), the model's scores on it and the labels."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != len(feature_names):
        raise ValueError(f"expected a matrix of {len(feature_names)} columns, got shape {features.shape}")
    return ReferenceProfile(
        features={name: Histogram.of(features[:, i], bins) for i, name in enumerate(feature_names)},
        score=Histogram.of(np.asarray(scores), bins),
        like_rate=float(np.mean(labels)) if len(labels) else 0.0,
        rows=len(features),
    )


class ProfileSource:
    """The reference profile of each version of a registered model, fetched from its run's artifacts once and kept;
    a version whose profile cannot be had (none logged, MLflow down) is asked again after ``retry_seconds``."""

    def __init__(self, tracking_uri: str, model_name: str, retry_seconds: float = 60.0) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.retry_seconds = retry_seconds
        self._known: dict[str, ReferenceProfile] = {}
        self._missing: dict[str, float] = {}

    def fetch(self, version: str) -> ReferenceProfile:
        """Download and read the version's profile; raises what MLflow or the JSON raise."""
        import tempfile
        from pathlib import Path

        import mlflow

        from streamml.stores.mlflow_client import mlflow_client

        run_id = mlflow_client(self.tracking_uri).get_model_version(self.model_name, version).run_id
        with tempfile.TemporaryDirectory(prefix="streamml-profile-") as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=PROFILE_ARTIFACT, dst_path=tmp, tracking_uri=self.tracking_uri
            )
            return ReferenceProfile.from_json(Path(path).read_text())

    def __call__(self, version: str) -> ReferenceProfile | None:
        import logging
        import time

        known = self._known.get(version)
        if known is not None:
            return known
        missing = self._missing.get(version)
        if missing is not None and time.monotonic() - missing < self.retry_seconds:
            return None
        try:
            self._known[version] = self.fetch(version)
        except Exception as exc:  # noqa: BLE001 - no profile (an older version, MLflow down): no drift report for now
            self._missing[version] = time.monotonic()
            logging.getLogger(__name__).warning(
                "no reference profile for %s version %s: %s", self.model_name, version, exc
            )
            return None
        return self._known[version]
