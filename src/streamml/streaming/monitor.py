"""The drift monitor as the metrics aggregator runs it: the window and the calibration slices fed by predictions and
joins, assessed against the serving version's reference profile (:mod:`streamml.streaming.drift`), and the
retraining trigger that acts on its alarms."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from streamml.features.spec import FEATURE_NAMES
from streamml.models.profile import ReferenceProfile
from streamml.streaming.drift import (
    WINDOW,
    Alarm,
    CalibrationSlices,
    DriftAlarms,
    DriftReport,
    DriftThresholds,
    DriftWindow,
    assess,
)


class DriftMonitor:
    """The metrics aggregator's drift monitor: a :class:`DriftWindow` of served predictions and
    :class:`CalibrationSlices` of joined ones, assessed at each publish against the reference profile of the model
    version serving (``profiles(version)``, None while it cannot be had), and the :class:`DriftAlarms`. A new
    version starts a fresh window: its scores, and what it is compared with, are new."""

    def __init__(
        self,
        profiles: Callable[[str], ReferenceProfile | None],
        thresholds: DriftThresholds | None = None,
        window: int = WINDOW,
        quality_window: int = 1000,
        persist: int = 1,
        overall_window: int | None = None,
    ) -> None:
        self.profiles = profiles
        self.thresholds = thresholds or DriftThresholds()
        self.window = DriftWindow(window)
        self.slices = CalibrationSlices(quality_window, overall=overall_window)
        self.alarms = DriftAlarms(persist=persist)
        self.version: str | None = None
        self.report: DriftReport | None = None

    def observe(self, features: Sequence[float], score: float, version: str) -> None:
        """A served prediction."""
        if version != self.version:
            self.version = version
            self.window.clear()
            self.slices.clear()
        self.window.add(features, score)

    def joined(self, features: Sequence[float], label: int, score: float, version: str) -> None:
        """A prediction joined with its feedback."""
        if version == self.version:
            self.window.add_outcome(label, score)
            self.slices.add(features, label, score)

    def assess(self, now: float) -> Literal["onset", "cleared"] | None:
        """Assess the window (keeping the report); say whether an alarm was raised or cleared."""
        profile = self.profiles(self.version) if self.version is not None else None
        if profile is None:
            self.report = None
            return None
        self.report = assess(self.window, profile, FEATURE_NAMES, self.thresholds, self.version, self.slices)
        return self.alarms.update(self.report, now)


@dataclass
class RetrainTrigger:
    """Starts retraining (``trigger(conf) -> run id``, e.g. Airflow's REST API) once per alarm, at most once per
    ``cooldown`` seconds; a failed trigger is tried again ``retry_seconds`` later while the alarm lasts. ``last`` is
    the latest trigger, for the Drift page and the snapshot."""

    trigger: Callable[[dict[str, Any]], str]
    cooldown: float = 3600.0
    retry_seconds: float = 60.0
    last: dict[str, Any] | None = None
    _alarm: float | None = None  # the onset of the alarm that was acted on
    _failed_at: float | None = None

    def __call__(self, alarm: Alarm | None, now: float) -> dict[str, Any] | None:
        """Act on the active alarm (None: nothing to do); return the latest trigger."""
        if alarm is None or alarm.onset == self._alarm:
            return self.last
        if self._failed_at is not None and now - self._failed_at < self.retry_seconds:
            return self.last
        if self.last is not None and "triggered_at" in self.last and now - self.last["triggered_at"] < self.cooldown:
            self._alarm = alarm.onset
            return self.last
        reason = "; ".join(alarm.reasons)[:500]
        try:
            run_id = self.trigger({"reason": reason})
        except Exception as exc:  # noqa: BLE001 - Airflow down or refusing: say so, try again later
            self._failed_at = now
            self.last = {**(self.last or {}), "error": f"{type(exc).__name__}: {exc}", "error_at": now}
            return self.last
        self._alarm, self._failed_at = alarm.onset, None
        self.last = {"triggered_at": now, "dag_run_id": run_id, "reason": reason}
        return self.last
