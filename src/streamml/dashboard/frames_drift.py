"""The Drift page's frames: the drift monitor's report in ``metrics:latest`` (the snapshot's ``drift`` object: a
:class:`~streamml.streaming.drift.DriftReport` with the ``alarms`` history and the last ``retrain`` trigger), shaped
for charts and tables.

Pure functions of raw values, so they are unit-tested without Redis; :mod:`.live_metrics` reads the value. Every part
of the object may be absent (an aggregator without a monitor, a champion without a reference profile) or unreadable;
the page then says why instead of failing."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
from pydantic import ValidationError

from streamml.dashboard.values import number, parse_time
from streamml.streaming.drift import BinShares, DriftReport, DriftThresholds

SCORE = "score"
"""The histogram option of the model's score (beside the features)."""
PSI_COLUMNS = ("feature", "psi", "drifted")
HISTOGRAM_COLUMNS = ("bin", "range", "order", "population", "share")
ALARM_COLUMNS = ("onset", "cleared", "state", "duration", "reasons")


@dataclass(frozen=True)
class DriftView:
    """What ``metrics:latest`` says about drift. ``report`` is None when there is no snapshot (``snapshot_at`` None),
    the snapshot has no ``drift`` object, or it cannot be read (``problem`` says what is wrong with it)."""

    snapshot_at: float | None = None
    model_version: str | None = None
    report: DriftReport | None = None
    alarms: list[dict[str, Any]] = field(default_factory=list)
    retrain: dict[str, Any] | None = None
    problem: str | None = None

    def age_seconds(self, now: float) -> float | None:
        return None if self.snapshot_at is None else max(0.0, now - self.snapshot_at)


def drift_view(latest: bytes | str | None) -> DriftView:
    """The drift parts of a raw ``metrics:latest`` value, read leniently: an unreadable part becomes ``problem``."""
    if not latest:
        return DriftView()
    try:
        snapshot = json.loads(latest)
    except ValueError:
        return DriftView(problem="metrics:latest is not JSON")
    if not isinstance(snapshot, Mapping):
        return DriftView(problem="metrics:latest is not a JSON object")
    version = snapshot.get("model_version")
    base = DriftView(
        snapshot_at=number(snapshot.get("at")), model_version=str(version) if version is not None else None
    )
    drift = snapshot.get("drift")
    if drift is None:
        return base
    if not isinstance(drift, Mapping):
        return replace(base, problem="its drift entry is not an object")
    try:
        report = DriftReport.model_validate(drift)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"]))
        return replace(base, problem=f"its drift report cannot be read ({where}: {first['msg']})")
    listed = drift.get("alarms")
    alarms = [dict(a) for a in listed if isinstance(a, Mapping)] if isinstance(listed, list) else []
    retrain = drift.get("retrain")
    return replace(base, report=report, alarms=alarms, retrain=dict(retrain) if isinstance(retrain, Mapping) else None)


def missing_reason(view: DriftView, thresholds: DriftThresholds | None = None) -> str:
    """Why there is no drift report to show, in a sentence or two for the page."""
    needs = thresholds or DriftThresholds()
    monitor = (
        "The drift monitor in the metrics aggregator publishes a report every few seconds once the champion has a "
        "reference profile (`reference_profile.json`, logged with the model at training) and predictions flow; it "
        "raises alarms "
        f"only once its window holds {needs.min_window:,} predictions."
    )
    if view.problem:
        return f"The latest metrics snapshot has a drift entry, but {view.problem}. {monitor}"
    if view.snapshot_at is None:
        return (
            "No drift report has been published yet (Redis `metrics:drift` is empty). It needs a champion trained with "
            "a reference profile (Pipelines page, `movielens_training`) and traffic (`streamml stack start "
            "replayer`). " + monitor
        )
    serving = f" (serving v{view.model_version})" if view.model_version else ""
    return f"No drift report has been published yet: the latest metrics snapshot{serving} has none. {monitor}"


def psi_frame(report: DriftReport) -> pd.DataFrame:
    """``feature, psi, drifted`` (PSI at or over the report's threshold), the largest PSI first."""
    threshold = report.thresholds.feature_psi
    rows = [{"feature": name, "psi": float(psi), "drifted": psi >= threshold} for name, psi in report.psi.items()]
    frame = pd.DataFrame(rows, columns=list(PSI_COLUMNS))
    return frame.sort_values(["psi", "feature"], ascending=[False, True], kind="stable").reset_index(drop=True)


def calibration_frame(report: DriftReport) -> pd.DataFrame:
    """One row per calibration slice, the largest gap first."""
    rows = [
        {"slice": name, "joins": c.n, "liked": c.live, "predicted": c.predicted, "gap": c.gap}
        for name, c in report.calibration.items()
    ]
    frame = pd.DataFrame(rows, columns=["slice", "joins", "liked", "predicted", "gap"])
    return frame.reindex(frame["gap"].abs().sort_values(ascending=False).index).reset_index(drop=True)


def histogram_options(report: DriftReport) -> list[str]:
    """The features with a histogram, the largest PSI first, then :data:`SCORE` when the report has its
    histogram."""
    ranked = sorted(report.histograms, key=lambda name: (-report.psi.get(name, -1.0), name))
    return ranked + ([SCORE] if report.score_histogram is not None else [])


def histogram_of(report: DriftReport, option: str) -> BinShares | None:
    return report.score_histogram if option == SCORE else report.histograms.get(option)


def bin_labels(edges: Sequence[float]) -> tuple[list[str], list[str]]:
    """Short and full labels of the bins of the interior cut points ``edges`` (a value sits in bin ``i`` when
    ``edges[i-1] < value <= edges[i]``): short by the upper edge, ``≤ a``, ``≤ b``, ..., ``> z`` (the bins are
    contiguous and in order), full as intervals, ``≤ a``, ``(a, b]``, ..., ``> z``; ``all`` without an edge. Edges
    get as many significant digits as it takes to tell them apart; large ones are compact (``336k``, ``1.2M``)."""
    if not edges:
        return ["all"], ["all"]
    texts = [_number(e, 3) for e in edges]
    for digits in range(4, 10):
        if len(set(texts)) == len(texts):
            break
        texts = [_number(e, digits) for e in edges]
    short = [*(f"≤ {t}" for t in texts), f"> {texts[-1]}"]
    full = [f"≤ {texts[0]}", *(f"({a}, {b}]" for a, b in zip(texts, texts[1:], strict=False)), f"> {texts[-1]}"]
    return short, full


_SUFFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _number(value: float, digits: int) -> str:
    magnitude = abs(value)
    if magnitude >= 1e4:
        scale, suffix = next((s, x) for s, x in _SUFFIXES if magnitude >= s)
        return _significant(value / scale, digits) + suffix
    if float(value).is_integer():
        return f"{int(value):,}"
    return _significant(value, digits)


def _significant(value: float, digits: int) -> str:
    """At most ``digits`` significant digits, in fixed point from 1 up (never ``1e+04``)."""
    if abs(value) < 1:
        return f"{value:.{digits}g}"
    text = f"{value:.{max(0, digits - len(str(int(abs(value)))))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def histogram_frame(bins: BinShares) -> pd.DataFrame:
    """``bin, range, order, population, share``: the reference's and the live share of each bin, bins in order
    (``bin`` the short label, ``range`` the interval)."""
    short, full = bin_labels(bins.edges)
    rows = [
        {"bin": short[i], "range": full[i], "order": i, "population": population, "share": float(shares[i])}
        for population, shares in (("reference", bins.reference), ("live", bins.live))
        for i in range(min(len(short), len(shares)))
    ]
    return pd.DataFrame(rows, columns=list(HISTOGRAM_COLUMNS))


def alarms_frame(alarms: Sequence[Mapping[str, Any]], now: float | None = None) -> pd.DataFrame:
    """The alarm history, newest first: ``onset``/``cleared`` as UTC times, ``state`` (active or cleared), how long
    it lasted (an active alarm: until ``now``, when given) and the reasons. Entries without a readable onset are
    skipped."""
    rows = []
    for alarm in alarms:
        onset = number(alarm.get("onset"))
        if onset is None:
            continue
        cleared = number(alarm.get("cleared"))
        end = cleared if cleared is not None else now
        reasons = alarm.get("reasons") or []
        rows.append(
            {
                "onset": parse_time(onset),
                "cleared": parse_time(cleared) if cleared is not None else None,
                "state": "cleared" if cleared is not None else "active",
                "duration": duration_text(end - onset) if end is not None else "",
                "reasons": "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else str(reasons),
                "_onset": onset,
            }
        )
    frame = pd.DataFrame(rows, columns=[*ALARM_COLUMNS, "_onset"])
    return frame.sort_values("_onset", ascending=False).drop(columns="_onset").reset_index(drop=True)


def active_onset(alarms: Sequence[Mapping[str, Any]]) -> float | None:
    """When the alarm that has not cleared was raised (unix seconds); None when none is active."""
    for alarm in reversed(alarms):
        if alarm.get("cleared") is None and (onset := number(alarm.get("onset"))) is not None:
            return onset
    return None


def duration_text(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.2 h``."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def retrain_text(retrain: Mapping[str, Any] | None) -> str | None:
    """The last automatic retrain trigger in a line (``None`` without one): when, the DAG run, why."""
    if not retrain:
        return None
    at = parse_time(retrain.get("triggered_at"))
    when = at.strftime("%Y-%m-%d %H:%M:%S UTC") if at is not None else "at an unknown time"
    run = retrain.get("dag_run_id")
    reason = retrain.get("reason")
    return f"Triggered {when}" + (f", DAG run `{run}`" if run else "") + (f": {reason}" if reason else "")
