"""The live drift window: the latest served feature vectors and scores, compared with the champion's reference profile.

The metrics aggregator adds every prediction it reads (:meth:`DriftWindow.add`, the served features of
:class:`~streamml.streaming.messages.Prediction`) and every joined outcome (:meth:`DriftWindow.add_outcome`); at
each publish, :func:`assess` compares the window with the serving version's
:class:`~streamml.models.profile.ReferenceProfile` (PSI per feature and of the score, the like-rate shift) and
decides an alarm from :class:`DriftThresholds`; :class:`DriftAlarms` keeps the alarm history, with hysteresis.
Everything here is pure: no Kafka, no Redis, no clock.

The report is embedded as the ``drift`` object of ``metrics:latest``, with the live histograms the dashboard's Drift
page draws: each feature's live shares over its reference bins.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from streamml.features.spec import FEATURE_NAMES, N_FEATURES
from streamml.models.profile import PSI_FLOOR, Histogram, ReferenceProfile

WINDOW = 5000
"""Served predictions (and joined outcomes) the window holds."""
PSI_DIGITS = 4
SHARE_DIGITS = 4
EDGE_DIGITS = 6  # significant digits of the bin edges in the report (they label the bins; the shares use exact edges)
ALARM_HISTORY = 50
CLEAR_AFTER = 3


class DriftWindow:
    """Ring buffers of the latest ``size`` served predictions (feature vector and score) and, separately, of the
    latest ``size`` joined outcomes (label and score), preallocated so adding a row is one assignment.

    The views (:meth:`features`, :meth:`scores`, ...) hold the filled rows in ring order, not in arrival order: PSI
    and a like rate do not depend on order. They are views: copy them to keep them past the next ``add``."""

    def __init__(self, size: int = WINDOW, n_features: int = N_FEATURES) -> None:
        if size < 1:
            raise ValueError(f"window size must be at least 1, got {size}")
        self.size = size
        self.n_features = n_features
        self._features = np.zeros((size, n_features), dtype=np.float64)
        self._scores = np.zeros(size, dtype=np.float64)
        self._labels = np.zeros(size, dtype=np.float64)
        self._joined_scores = np.zeros(size, dtype=np.float64)
        self._next = 0
        self._filled = 0
        self._next_outcome = 0
        self._outcomes = 0
        self.total = 0
        """Predictions added since the window was made (or cleared)."""

    def add(self, features: Sequence[float], score: float) -> None:
        """Add one served prediction, replacing the oldest when the window is full."""
        i = self._next
        self._features[i] = features
        self._scores[i] = score
        self._next = i + 1 if i + 1 < self.size else 0
        if self._filled < self.size:
            self._filled += 1
        self.total += 1

    def add_outcome(self, label: int, score: float = math.nan) -> None:
        """Add one joined outcome: the true label (1 = liked) and, when known, the score it was predicted with."""
        i = self._next_outcome
        self._labels[i] = label
        self._joined_scores[i] = score
        self._next_outcome = i + 1 if i + 1 < self.size else 0
        if self._outcomes < self.size:
            self._outcomes += 1

    def clear(self) -> None:
        self._next = self._filled = self._next_outcome = self._outcomes = self.total = 0

    def __len__(self) -> int:
        """How many predictions the window holds."""
        return self._filled

    @property
    def outcomes(self) -> int:
        """How many joined outcomes the window holds."""
        return self._outcomes

    def features(self) -> np.ndarray:
        """The held feature vectors, ``len(self) x n_features``."""
        return self._features[: self._filled]

    def scores(self) -> np.ndarray:
        return self._scores[: self._filled]

    def labels(self) -> np.ndarray:
        """The held outcomes' labels."""
        return self._labels[: self._outcomes]

    def joined_scores(self) -> np.ndarray:
        """The held outcomes' scores (NaN where not given)."""
        return self._joined_scores[: self._outcomes]


class DriftThresholds(BaseModel):
    """When the drift monitor raises an alarm. Each rule fires on its own; none fires before the window is full
    enough (``min_window``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature_psi: float = Field(0.25, gt=0, description="A feature has drifted when its PSI is at least this.")
    min_drifted_features: int = Field(
        0, ge=0, description="Alarm when at least this many features have drifted (0: the rule is off)."
    )
    score_psi: float = Field(
        0.0, ge=0, description="Alarm when the PSI of the scores is at least this (0: the rule is off)."
    )
    calibration_gap: float = Field(
        0.15, gt=0, le=1, description="Alarm when a full slice's live like rate and mean score differ by this."
    )
    min_window: int = Field(
        5000,
        ge=1,
        description="No alarm before the window holds this many predictions (nor before a calibration slice is full).",
    )


class BinShares(BaseModel):
    """One feature's (or the score's) reference bins: the interior cut points, the reference and the live shares."""

    edges: list[float]
    reference: list[float]
    live: list[float]


class SliceCalibration(BaseModel):
    """A slice's latest joined predictions: how many, the share liked, the mean score, and the gap between them."""

    n: int
    live: float
    predicted: float
    gap: float


ALL = "all"
GENRE_COLUMNS: tuple[tuple[str, int], ...] = tuple(
    (name.removeprefix("genre_"), FEATURE_NAMES.index(name)) for name in FEATURE_NAMES if name.startswith("genre_")
)
"""The calibration slices besides ``all``: each genre, read from the served one-hot genre features."""


class CalibrationSlices:
    """The latest joined (label, score) pairs of every slice: ``overall`` of all requests, ``size`` of each genre's.

    All requests get more: users rate in sessions, and one user's session (everything rated low, say) moves the
    overall gap more than a genre's, whose requests come from many users' sessions. Measured on the stack's undrifted
    replay at 50 requests/s, the largest |gap| of all requests was 0.186 over 1,000 joins and 0.105 over 2,000; of a
    genre, 0.203 over 500 and 0.120 over 1,000."""

    def __init__(
        self, size: int = 1000, genres: Sequence[tuple[str, int]] = GENRE_COLUMNS, overall: int | None = None
    ) -> None:
        self.size = size
        self.overall = overall or 2 * size
        self.genres = tuple(genres)
        self._pairs: dict[str, deque[tuple[int, float]]] = {}

    def capacity(self, name: str) -> int:
        """How many joins slice ``name`` holds when full."""
        return self.overall if name == ALL else self.size

    def add(self, features: Sequence[float], label: int, score: float) -> None:
        for name in (ALL, *(g for g, column in self.genres if features[column] > 0.5)):
            pairs = self._pairs.get(name)
            if pairs is None:
                pairs = self._pairs[name] = deque(maxlen=self.capacity(name))
            pairs.append((label, score))

    def clear(self) -> None:
        self._pairs.clear()

    def calibration(self) -> dict[str, SliceCalibration]:
        out = {}
        for name, pairs in self._pairs.items():
            labels, scores = np.array(pairs, dtype=np.float64).T
            live, predicted = float(labels.mean()), float(scores.mean())
            out[name] = SliceCalibration(
                n=len(pairs),
                live=round(live, SHARE_DIGITS),
                predicted=round(predicted, SHARE_DIGITS),
                gap=round(live - predicted, SHARE_DIGITS),
            )
        return out


class DriftReport(BaseModel):
    """One assessment of the window against a reference profile (floats rounded for the JSON)."""

    model_config = ConfigDict(frozen=True)

    reference_version: str | None = Field(description="The model version whose reference profile was compared.")
    window: int = Field(description="Served predictions in the window.")
    outcomes: int = Field(description="Joined outcomes in the window (behind the live like rate).")
    ready: bool = Field(description="The window holds min_window predictions: the rules were applied.")
    psi: dict[str, float] = Field(description="PSI per feature of the profile (features without a value left out).")
    score_psi: float | None
    like_rate_live: float | None = Field(description="Share of liked among the joined outcomes.")
    like_rate_predicted: float | None = Field(description="Mean score of the joined outcomes.")
    like_rate_reference: float | None
    like_rate_shift: float | None = Field(description="like_rate_live - like_rate_reference.")
    calibration: dict[str, SliceCalibration] = Field(
        default_factory=dict, description="Per slice (all, each genre): live like rate vs mean score of its joins."
    )
    max_psi: float | None
    max_feature: str | None
    drifted: list[str] = Field(description="Features with PSI >= thresholds.feature_psi, the largest first.")
    alarm: bool
    reasons: list[str] = Field(description="Each rule that fired, with its numbers.")
    thresholds: DriftThresholds
    histograms: dict[str, BinShares] = Field(description="Per feature, live shares over the reference bins.")
    score_histogram: BinShares | None = None


@dataclass(frozen=True)
class _Bins:
    """A profile's histograms for the columns of a window, padded into matrices: ``cuts[k]`` holds every feature's
    k-th edge (+inf past a feature's own edges, so no value lands beyond its bins), ``reference`` the shares
    (zero-padded)."""

    names: list[str]
    columns: np.ndarray | None  # the window column of each name; None when they are all the columns, in order
    cuts: np.ndarray  # most edges x features
    reference: np.ndarray  # features x (most edges + 1)
    bins: list[int]  # each feature's own number of bins

    @classmethod
    def of(cls, profile: ReferenceProfile, feature_names: Sequence[str]) -> _Bins:
        chosen = [(i, name, profile.features[name]) for i, name in enumerate(feature_names) if name in profile.features]
        width = max((len(h.edges) for _, _, h in chosen), default=0)
        cuts = np.full((width, len(chosen)), np.inf)
        reference = np.zeros((len(chosen), width + 1))
        for column, (_, _, h) in enumerate(chosen):
            cuts[: len(h.edges), column] = h.edges
            reference[column, : len(h.shares)] = h.shares
        every = len(chosen) == len(feature_names)
        return cls(
            names=[name for _, name, _ in chosen],
            columns=None if every else np.array([i for i, _, _ in chosen], dtype=np.intp),
            cuts=cuts,
            reference=reference,
            bins=[len(h.shares) for _, _, h in chosen],
        )

    def live_shares(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The live shares of each feature's finite values in its bins (features x bins) and how many finite values
        each feature has. One comparison of the whole matrix per edge rank, not one search per feature."""
        values = features if self.columns is None else features[:, self.columns]
        width, n_features = self.cuts.shape
        # A value sits in bin i when edges[i-1] < value <= edges[i] (as Histogram.counts): its bin is the number of
        # edges below it. Counted in bytes (at most BINS bins), adding the comparison's bytes: no casts.
        index = np.zeros(values.shape, dtype=np.uint8 if width < 250 else np.intp)
        above = np.empty(values.shape, dtype=bool)
        above_count = above.view(np.uint8) if index.dtype == np.uint8 else above
        for cut in self.cuts:
            np.greater(values, cut, out=above)
            index += above_count
        stride = width + 2  # the extra bin collects the non-finite values, which are left out
        index[~np.isfinite(values)] = width + 1
        flat = index + np.arange(n_features, dtype=np.intp) * stride
        counts = np.bincount(flat.ravel(), minlength=n_features * stride).reshape(n_features, stride)[:, :-1]
        finite = counts.sum(axis=1)
        shares = counts / np.maximum(finite, 1)[:, None]
        return shares, finite


def psi_rows(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> np.ndarray:
    """:func:`~streamml.models.profile.psi` of each row of ``actual`` against the same row of ``expected`` (padded
    bins, zero in both, add nothing)."""
    e = np.maximum(expected, floor)
    a = np.maximum(actual, floor)
    return np.asarray(np.sum((a - e) * np.log(a / e), axis=1))


def assess(
    window: DriftWindow,
    profile: ReferenceProfile,
    feature_names: Sequence[str] = FEATURE_NAMES,
    thresholds: DriftThresholds | None = None,
    reference_version: str | None = None,
    slices: CalibrationSlices | None = None,
) -> DriftReport:
    """Compare ``window`` (columns named ``feature_names``) with ``profile``; features the profile does not have are
    skipped. The rules, each applied once the window holds ``min_window`` predictions:

    - at least ``min_drifted_features`` features have PSI >= ``feature_psi`` (when that is not 0);
    - the score PSI is >= ``score_psi``;
    - in a full calibration slice (``slices``: all requests, or one genre's), the live like rate and the mean score
      of its latest joins differ by >= ``calibration_gap``: the model no longer predicts what people do.
    """
    thresholds = thresholds or DriftThresholds()
    features, scores, labels = window.features(), window.scores(), window.labels()
    bins = _Bins.of(profile, feature_names)
    shares, finite = bins.live_shares(features)
    values = psi_rows(bins.reference, shares)
    psi = {name: round(float(v), PSI_DIGITS) for name, v, n in zip(bins.names, values, finite, strict=True) if n}
    rounded = np.round(shares, SHARE_DIGITS)  # once for every feature: the histograms are most of the report
    histograms = {
        name: _bin_shares(profile.features[name], rounded[row, : bins.bins[row]]) for row, name in enumerate(bins.names)
    }
    score_psi = _round(profile.score.psi(scores), PSI_DIGITS) if len(scores) else None
    score_histogram = _bin_shares(profile.score, profile.score.shares_of(scores))

    like_live = float(np.mean(labels)) if len(labels) else None
    joined = window.joined_scores()
    joined = joined[np.isfinite(joined)]
    like_predicted = float(np.mean(joined)) if len(joined) else None
    shift = like_live - profile.like_rate if like_live is not None else None

    drifted = sorted((name for name, v in psi.items() if v >= thresholds.feature_psi), key=lambda n: -psi[n])
    max_feature = max(psi, key=lambda n: psi[n]) if psi else None
    ready = len(window) >= thresholds.min_window
    reasons: list[str] = []
    calibration = slices.calibration() if slices is not None else {}
    if ready and thresholds.min_drifted_features and len(drifted) >= thresholds.min_drifted_features:
        top = ", ".join(f"{name} {psi[name]:.3f}" for name in drifted[:5])
        more = f", +{len(drifted) - 5} more" if len(drifted) > 5 else ""
        reasons.append(
            f"{len(drifted)} features with PSI >= {thresholds.feature_psi:g} "
            f"(alarm at {thresholds.min_drifted_features}): {top}{more}"
        )
    if ready and thresholds.score_psi and score_psi is not None and score_psi >= thresholds.score_psi:
        reasons.append(f"score PSI {score_psi:.3f} >= {thresholds.score_psi:g}")
    off = {
        n: c
        for n, c in calibration.items()
        if slices is not None and c.n >= slices.capacity(n) and abs(c.gap) >= thresholds.calibration_gap
    }
    if ready and off:
        worst = sorted(off, key=lambda n: -abs(off[n].gap))
        text = ", ".join(
            f"{n} {off[n].live:.2f} liked vs {off[n].predicted:.2f} predicted (last {off[n].n} joins)"
            for n in worst[:3]
        )
        reasons.append(f"calibration gap >= {thresholds.calibration_gap:g}: {text}")
    return DriftReport(
        reference_version=reference_version,
        window=len(window),
        outcomes=window.outcomes,
        ready=ready,
        psi=psi,
        score_psi=score_psi,
        like_rate_live=_round(like_live, SHARE_DIGITS),
        like_rate_predicted=_round(like_predicted, SHARE_DIGITS),
        like_rate_reference=round(profile.like_rate, SHARE_DIGITS),
        like_rate_shift=_round(shift, SHARE_DIGITS),
        calibration=calibration,
        max_psi=psi[max_feature] if max_feature is not None else None,
        max_feature=max_feature,
        drifted=drifted,
        alarm=bool(reasons),
        reasons=reasons,
        thresholds=thresholds,
        histograms=histograms,
        score_histogram=score_histogram,
    )


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _bin_shares(reference: Histogram, live: np.ndarray) -> BinShares:
    return BinShares(
        edges=[float(f"{e:.{EDGE_DIGITS}g}") for e in reference.edges],
        reference=[round(s, SHARE_DIGITS) for s in reference.shares],
        live=np.round(live, SHARE_DIGITS).tolist(),
    )


@dataclass
class Alarm:
    """One drift alarm: when it was raised (unix seconds), why, and when it cleared (None while active)."""

    onset: float
    reasons: list[str]
    cleared: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"onset": self.onset, "cleared": self.cleared, "reasons": list(self.reasons)}


@dataclass
class DriftAlarms:
    """The alarm history, with hysteresis: an alarm is raised by the first assessment whose rules fire, and clears
    only after ``clear_after`` assessments in a row fire none. A report that is not ``ready`` (too few predictions to
    judge) neither raises, clears nor counts toward clearing."""

    clear_after: int = CLEAR_AFTER
    max_history: int = ALARM_HISTORY
    persist: int = 1
    """Assessments in a row whose rules fire before an alarm is raised (one noisy window is no alarm)."""
    history: deque[Alarm] = field(default_factory=deque)
    _calm: int = 0
    _firing: int = 0

    def __post_init__(self) -> None:
        if self.clear_after < 1 or self.persist < 1:
            raise ValueError(f"clear_after and persist must be at least 1, got {self.clear_after}, {self.persist}")

    @property
    def active(self) -> Alarm | None:
        """The alarm raised and not cleared yet."""
        return self.history[-1] if self.history and self.history[-1].cleared is None else None

    def update(self, report: DriftReport, now: float) -> Literal["onset", "cleared"] | None:
        """Apply one assessment; say whether it raised (``"onset"``) or cleared (``"cleared"``) the alarm."""
        if not report.ready:
            return None
        active = self.active
        self._firing = self._firing + 1 if report.alarm else 0
        if report.alarm:
            self._calm = 0
            if active is not None or self._firing < self.persist:
                return None
            self.history.append(Alarm(onset=now, reasons=list(report.reasons)))
            while len(self.history) > self.max_history:
                self.history.popleft()
            return "onset"
        if active is None:
            return None
        self._calm += 1
        if self._calm < self.clear_after:
            return None
        active.cleared = now
        self._calm = 0
        return "cleared"

    def entries(self) -> list[dict[str, Any]]:
        """The history as JSON-ready dicts, oldest first (the ``alarms`` list beside the report)."""
        return [alarm.as_dict() for alarm in self.history]
