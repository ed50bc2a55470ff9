"""Drift: the served features and scores against the champion's reference (its streaming evaluation set), from the drift
monitor's report in ``metrics:drift``, refreshed every few seconds without reloading the page."""

from __future__ import annotations

import time

import streamlit as st

from streamml.config import Settings
from streamml.dashboard import charts, frames_drift, labels
from streamml.dashboard.errors import ServiceDown
from streamml.dashboard.frames_drift import DriftView
from streamml.dashboard.labels import fmt, labelled
from streamml.dashboard.live_metrics import read_drift
from streamml.dashboard.pages.common import redis_client, show_problem
from streamml.streaming.drift import DriftReport

REFRESH_SECONDS = 5
STALE_SECONDS = 30
TOP_FEATURES = 20


def render(settings: Settings) -> None:
    st.title("Drift")
    st.caption(
        "The features and scores the scorer served, over its latest predictions, against the serving version's "
        "reference profile (quantile bins of the features and scores of its streaming evaluation set), and how well "
        "its scores predict the likes of each genre, from the drift monitor in the metrics aggregator (Redis "
        f"`metrics:drift`, every {labels.PUBLISH_SECONDS:g} s). {labels.PSI_READING}. "
        f"Refreshes every {REFRESH_SECONDS} s."
    )
    drift_panel(settings)


@st.fragment(run_every=REFRESH_SECONDS)
def drift_panel(settings: Settings) -> None:
    try:
        view = read_drift(redis_client(settings.redis))
    except ServiceDown as exc:
        show_problem(exc, "The drift report")
        return
    age = view.age_seconds(time.time())
    if age is not None and age > STALE_SECONDS:
        st.warning(
            f"The latest metrics are {age:,.0f} s old: the metrics aggregator is not publishing "
            "(see `./run.sh logs metrics-aggregator`). Showing the last values.",
            icon=":material/schedule:",
        )
    report = view.report
    if report is None:
        if view.problem:
            st.warning(frames_drift.missing_reason(view), icon=":material/report:")
        else:
            st.info(frames_drift.missing_reason(view), icon=":material/hourglass_empty:")
        return

    status(view, report)
    tiles(report)
    left, right = st.columns(2)
    with left:
        psi_section(report)
    with right:
        histogram_section(report)

    left, right = st.columns([2, 1])
    with left:
        st.subheader("Alarm history", anchor=False)
        alarms = frames_drift.alarms_frame(view.alarms, now=view.snapshot_at)
        if alarms.empty:
            st.info(f"No drift alarm {labels.SINCE_START}.")
        else:
            st.dataframe(
                alarms,
                hide_index=True,
                width="stretch",
                column_config={
                    "onset": st.column_config.DatetimeColumn("raised (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                    "cleared": st.column_config.DatetimeColumn("cleared (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                    "reasons": st.column_config.TextColumn("reasons", width="large"),
                },
            )
            st.caption(
                f"An alarm clears after several assessments in a row below every threshold. Kept {labels.SINCE_START}."
            )
    with right:
        st.subheader("Automatic retrain", anchor=False)
        text = frames_drift.retrain_text(view.retrain)
        if text is None:
            st.info("No retrain has been triggered by a drift alarm yet.")
        else:
            st.markdown(text)
    updated = time.strftime("%H:%M:%S", time.localtime(view.snapshot_at)) if view.snapshot_at else "—"
    st.caption(f"Report published at {updated}; page refreshed at {time.strftime('%H:%M:%S')}.")


def status(view: DriftView, report: DriftReport) -> None:
    """One line on the state of the monitor: collecting, an active alarm and why, or no alarm."""
    needs = report.thresholds.min_window
    if not report.ready:
        st.info(
            f"Collecting: the window holds {report.window:,} of the {needs:,} predictions the monitor needs before it "
            "raises an alarm. The numbers below are measured already.",
            icon=":material/hourglass_top:",
        )
    elif report.alarm:
        onset = frames_drift.active_onset(view.alarms)
        since = f" since {time.strftime('%H:%M:%S', time.gmtime(onset))} UTC" if onset is not None else ""
        reasons = "\n".join(f"- {r}" for r in report.reasons)
        st.warning(f"**Drift alarm**{since}.\n\n{reasons}", icon=":material/warning:")
    else:
        st.success("No drift alarm: every rule is below its threshold.", icon=":material/check_circle:")


def tiles(report: DriftReport) -> None:
    t = report.thresholds
    st.caption(f"**Distribution** of the {labels.drift_window(report.window)} predictions")
    row = st.columns(4)
    row[0].metric("Reference profile", f"v{report.reference_version}" if report.reference_version else "—")
    row[1].metric(
        labelled("Drifted features", f"PSI ≥ {t.feature_psi:g}"),
        f"{len(report.drifted)} of {len(report.psi)}",
        help=f"An alarm needs at least {t.min_drifted_features} drifted features."
        if t.min_drifted_features
        else "Shown, not alarmed on: this stream's users come in sessions, so user features drift all the time.",
    )
    row[2].metric(
        "Largest feature PSI",
        fmt(report.max_psi),
        help=f"Of {report.max_feature}." if report.max_feature else None,
    )
    row[3].metric(
        "Score PSI",
        fmt(report.score_psi),
        help=f"PSI of the scores against the reference scores; alarm at {t.score_psi:g}.",
    )

    st.caption(f"**Outcomes** over the last {report.outcomes:,} joined predictions")
    row = st.columns(4)
    row[0].metric(labelled("Like rate", "live"), fmt(report.like_rate_live), help="Share of liked among the joined.")
    row[1].metric(
        labelled("Like rate", "reference"),
        fmt(report.like_rate_reference),
        help="Share of liked in the reference (the version's evaluation stream).",
    )
    row[2].metric(
        labelled("Like-rate shift", "live − reference"),
        fmt(report.like_rate_shift, "+.3f"),
        help="Shown, not alarmed on: who is active moves it. The calibration gap below is the rule.",
    )
    row[3].metric(
        labelled("Predicted like rate", "mean score"),
        fmt(report.like_rate_predicted),
        help="What the model expected the live like rate to be.",
    )
    calibration = frames_drift.calibration_frame(report)
    if not calibration.empty:
        st.caption(
            f"**Calibration** per slice: live like rate vs mean score of its latest joins; an alarm when a full"
            f" slice's gap reaches {t.calibration_gap:g}"
        )
        st.dataframe(calibration, hide_index=True, width="stretch")


def psi_section(report: DriftReport) -> None:
    st.subheader("PSI per feature", anchor=False)
    psi = frames_drift.psi_frame(report)
    if psi.empty:
        st.info("No feature of the window is in the reference profile, or the window is empty.")
        return
    everything = st.toggle(f"All {len(psi)} features", key="drift_all_features", value=len(psi) <= TOP_FEATURES)
    shown = psi if everything else psi.head(TOP_FEATURES)
    st.altair_chart(charts.psi_bars(shown, report.thresholds.feature_psi), width="stretch")
    st.caption(
        f"{'All' if everything else f'The {len(shown)} largest of {len(psi)}'} features; red: drifted. Dashed "
        f"line: the drift threshold (PSI {report.thresholds.feature_psi:g}); an alarm needs "
        f"{report.thresholds.min_drifted_features} features at or over it."
    )


def histogram_section(report: DriftReport) -> None:
    st.subheader("Reference vs live", anchor=False)
    options = frames_drift.histogram_options(report)
    if not options:
        st.info("The report has no histogram.")
        return

    def describe(option: str) -> str:
        psi = report.score_psi if option == frames_drift.SCORE else report.psi.get(option)
        return f"{option} (PSI {psi:.3f})" if psi is not None else option

    option = st.selectbox("Feature", options, index=0, format_func=describe, key="drift_feature")
    bins = frames_drift.histogram_of(report, option or options[0])
    if bins is None:
        st.info("No histogram of this feature in the report.")
        return
    frame = frames_drift.histogram_frame(bins)
    title = "score bin" if option == frames_drift.SCORE else f"{option} bin"
    st.altair_chart(charts.histogram_compare(frame, title), width="stretch")
    st.caption(
        "Bins: the reference's quantile bins (each holds about the same share of the reference rows; a value often "
        "equal to one number, such as a count of 0, gets a bin of its own). Grey: the reference; orange: the "
        f"{labels.drift_window(report.window)} predictions."
    )
