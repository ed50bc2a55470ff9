"""Altair charts of the dashboard's frames (:mod:`.frames_live`, :mod:`.kafka_admin`, :mod:`.frames_models`,
:mod:`.frames_pipelines`, :mod:`.frames_drift`). Counts get integer axes, milliseconds and rates a format of their
own."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

STATE_COLORS = {
    "success": "#2e7d32",
    "running": "#1565c0",
    "queued": "#9e9e9e",
    "scheduled": "#bdbdbd",
    "up_for_retry": "#f9a825",
    "failed": "#c62828",
    "upstream_failed": "#ef6c00",
    "skipped": "#ce93d8",
}
COUNT_FORMAT = ",d"  # 1,234: a count has no fractional ticks
MS_FORMAT = ",.0f"
RATE_FORMAT = ",.1f"
SHARE_FORMAT = ".2f"


def count_axis() -> alt.Axis:
    """An axis of whole numbers: integer labels, never a tick between two integers."""
    return alt.Axis(format=COUNT_FORMAT, tickMinStep=1)


def count_scale(values: pd.Series, least: int = 10) -> alt.Scale:
    """From 0 to the largest value, at least ``least``: a column of zeros still gets a readable axis of integers."""
    top = int(values.max()) if len(values) and pd.notna(values.max()) else 0
    return alt.Scale(domain=[0, max(least, top)], nice=True)


def error_histogram(hist: pd.DataFrame, height: int = 260) -> alt.Chart:
    """Bars of ``bin_start..bin_end`` with ``count`` (joined predictions per bin)."""
    return (
        alt.Chart(hist)
        .mark_bar(color="#4c78a8", stroke="white", strokeWidth=0.5)
        .encode(
            x=alt.X(
                "bin_start:Q",
                bin="binned",
                title="|true label − score|",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format=".1f"),
            ),
            x2="bin_end:Q",
            y=alt.Y("count:Q", title="joined predictions (count)", axis=count_axis()),
            tooltip=[
                alt.Tooltip("bin_start:Q", format=".2f", title="from"),
                alt.Tooltip("bin_end:Q", format=".2f", title="to"),
                alt.Tooltip("count:Q", format=COUNT_FORMAT, title="count"),
            ],
        )
        # SVG, whatever the size: each bar then carries its tooltip as an aria-label the browser test reads.
        .properties(height=height, usermeta={"embedOptions": {"renderer": "svg"}})
    )


def lines(
    frame: pd.DataFrame,
    y_title: str,
    height: int = 260,
    y_domain: Sequence[float] | None = None,
    colors: dict[str, str] | None = None,
    y_format: str = SHARE_FORMAT,
) -> alt.Chart:
    """One line per ``series`` of a ``time, series, value`` frame; ``y_format`` is the value's d3 format (axis and
    tooltip), e.g. :data:`MS_FORMAT` for milliseconds."""
    scale = alt.Scale(domain=list(y_domain)) if y_domain else alt.Scale(zero=False)
    color = (
        alt.Color("series:N", title=None, scale=alt.Scale(domain=list(colors), range=list(colors.values())))
        if colors
        else alt.Color("series:N", title=None)
    )
    return (
        alt.Chart(frame)
        .mark_line(point=False, strokeWidth=2)
        .encode(
            x=alt.X("time:T", title=None, axis=alt.Axis(format="%H:%M:%S", tickCount=6, labelOverlap=True)),
            y=alt.Y("value:Q", title=y_title, scale=scale, axis=alt.Axis(format=y_format)),
            color=color,
            detail="segment:N",
            tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "series:N", alt.Tooltip("value:Q", format=y_format)],
        )
        .properties(height=height)
    )


def lag_bars(lag: pd.DataFrame, height: int = 220) -> alt.Chart:
    """Consumer lag per partition of a ``partition, lag`` frame."""
    return (
        alt.Chart(lag)
        .mark_bar(color="#f58518")
        .encode(
            x=alt.X("partition:N", title="partition", sort=None),
            y=alt.Y("lag:Q", title="lag (messages)", scale=count_scale(lag["lag"]), axis=count_axis()),
            tooltip=["partition:N", alt.Tooltip("lag:Q", format=COUNT_FORMAT, title="lag (messages)")],
        )
        .properties(height=height)
    )


def group_lag_bars(lag: pd.DataFrame, height: int = 240) -> alt.Chart:
    """Lag per topic partition, one bar per consumer group, of a :func:`~.kafka_admin.group_lag` frame."""
    data = lag.assign(where=lag["topic"] + " / " + lag["partition"].astype(str))
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("where:N", title="topic / partition", sort=None),
            y=alt.Y("lag:Q", title="lag (messages)", scale=count_scale(data["lag"]), axis=count_axis()),
            color=alt.Color("group:N", title="group"),
            xOffset="group:N",
            tooltip=[
                "group:N",
                "topic:N",
                alt.Tooltip("partition:Q", format="d"),
                alt.Tooltip("committed:Q", format=COUNT_FORMAT, title="committed offset"),
                alt.Tooltip("end:Q", format=COUNT_FORMAT, title="end offset"),
                alt.Tooltip("lag:Q", format=COUNT_FORMAT, title="lag (messages)"),
            ],
        )
        .properties(height=height)
    )


def confusion_heatmap(cells: pd.DataFrame, height: int = 260) -> alt.LayerChart:
    """A 2x2 heatmap with the count and share written in each cell."""
    base = alt.Chart(cells).encode(
        x=alt.X("predicted:N", title="predicted", sort=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("actual:N", title="actual", sort=None),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), legend=None),
        tooltip=[
            "actual:N",
            "predicted:N",
            alt.Tooltip("count:Q", format=COUNT_FORMAT, title="count (stream rows)"),
            alt.Tooltip("share:Q", format=".1%"),
        ],
    )
    text = base.mark_text(fontSize=16, fontWeight="bold").encode(
        text=alt.Text("count:Q", format=","),
        color=alt.condition(alt.datum.share > 0.25, alt.value("white"), alt.value("black")),
    )
    return (heat + text).properties(height=height)


def importance_bars(frame: pd.DataFrame, height: int | None = None) -> alt.Chart:
    """Permutation importance per feature, the most important on top."""
    return (
        alt.Chart(frame)
        .mark_bar(color="#54a24b")
        .encode(
            x=alt.X("importance:Q", title="importance (AUC drop)", axis=alt.Axis(format=".3f")),
            y=alt.Y("feature:N", sort="-x", title=None, axis=alt.Axis(labelLimit=240, labelOverlap=False)),
            tooltip=["feature:N", alt.Tooltip("importance:Q", format=".4f")],
        )
        .properties(height=height or max(120, 22 * len(frame)))
    )


def task_timeline(tasks: pd.DataFrame, height: int | None = None) -> alt.Chart:
    """A Gantt of task start/end coloured by state (tasks that have not started are left out)."""
    started = tasks.dropna(subset=["start_date"]).copy()
    now = pd.Timestamp.now(tz="UTC")
    started["end_date"] = started["end_date"].fillna(now)
    return (
        alt.Chart(started)
        .mark_bar(cornerRadius=2)
        .encode(
            x=alt.X("start_date:T", title=None, axis=alt.Axis(format="%H:%M:%S")),
            x2="end_date:T",
            y=alt.Y("task_id:N", sort=None, title=None),
            color=alt.Color(
                "state:N",
                scale=alt.Scale(domain=list(STATE_COLORS), range=list(STATE_COLORS.values())),
                legend=alt.Legend(title=None, orient="right"),
            ),
            tooltip=["task_id:N", "state:N", alt.Tooltip("duration_s:Q", format=".1f", title="duration (s)")],
        )
        .properties(height=height or 60 + 32 * len(started))
    )


def freshness_lines(frame: pd.DataFrame, height: int = 240) -> alt.Chart:
    """Streaming AUC against feedback lag (log-like point scale: 0, 10, 60, 3600 s), one line per version."""
    return (
        alt.Chart(frame)
        .mark_line(point=True, strokeWidth=2)
        .encode(
            x=alt.X("lag_s:O", title="feedback lag (s)", sort="ascending"),
            y=alt.Y("auc:Q", title="streaming AUC", scale=alt.Scale(zero=False), axis=alt.Axis(format=".3f")),
            color=alt.Color("version:N", title=None),
            tooltip=["version:N", alt.Tooltip("lag_s:O", title="lag (s)"), alt.Tooltip("auc:Q", format=".4f")],
        )
        .properties(height=height)
    )


DRIFT_COLORS = {"drifted": "#e45756", "stable": "#4c78a8"}
POPULATION_COLORS = {"reference": "#9e9e9e", "live": "#f58518"}


def psi_bars(frame: pd.DataFrame, threshold: float, height: int | None = None) -> alt.LayerChart:
    """PSI per feature of a :func:`~.frames_drift.psi_frame` (the largest on top), the drifted ones in red, with a
    dashed rule at ``threshold``. The axis is a square-root scale: a PSI of 5 beside one of 0.05 leaves both and the
    threshold readable."""
    data = frame.assign(status=frame["drifted"].map({True: "drifted", False: "stable"}))
    top = max([threshold * 1.2, *data["psi"].tolist()])  # the threshold is always on the axis
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X(
                "psi:Q",
                title="PSI (square-root scale)",
                scale=alt.Scale(type="sqrt", domain=[0, top], nice=False),
                axis=alt.Axis(format=".2~", tickCount=6),
            ),
            y=alt.Y(
                "feature:N",
                sort=data["feature"].tolist(),
                title=None,
                axis=alt.Axis(labelLimit=240, labelOverlap=False),
            ),
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=list(DRIFT_COLORS), range=list(DRIFT_COLORS.values())),
                legend=None,  # the caption says it: a legend would take the bars' height (layers fit their height)
            ),
            tooltip=["feature:N", alt.Tooltip("psi:Q", format=".4f", title="PSI"), "status:N"],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"threshold": [threshold]}))
        .mark_rule(color="#c62828", strokeDash=[4, 3], strokeWidth=1.5)
        .encode(x="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", format=".2f", title="drift threshold (PSI)")])
    )
    # A layered chart's height includes its axis (Streamlit fits it): room for the axis, then 20 px a bar.
    return (bars + rule).properties(height=height or 60 + 20 * len(data))


def histogram_compare(frame: pd.DataFrame, title: str, height: int = 320) -> alt.Chart:
    """The reference's and the live share of each bin of a :func:`~.frames_drift.histogram_frame`, side by side,
    bins in order (labelled by their upper edge; the tooltip has the interval)."""
    order = frame.drop_duplicates("bin").sort_values("order")["bin"].tolist()
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("bin:N", sort=order, title=title, axis=alt.Axis(labelAngle=0, labelOverlap=False)),
            xOffset=alt.XOffset("population:N", sort=list(POPULATION_COLORS)),
            y=alt.Y("share:Q", title="share of predictions", axis=alt.Axis(format=".0%")),
            color=alt.Color(
                "population:N",
                title=None,
                scale=alt.Scale(domain=list(POPULATION_COLORS), range=list(POPULATION_COLORS.values())),
                legend=alt.Legend(orient="top"),
            ),
            tooltip=[
                alt.Tooltip("range:N", title="bin"),
                "population:N",
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )
        .properties(height=height)
    )
