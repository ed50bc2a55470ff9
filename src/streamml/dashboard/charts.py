"""Altair charts of the frames :mod:`streamml.dashboard.queries` returns."""

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


def error_histogram(hist: pd.DataFrame, height: int = 260) -> alt.Chart:
    """Bars of ``bin_start..bin_end`` with ``count``."""
    return (
        alt.Chart(hist)
        .mark_bar(color="#4c78a8", stroke="white", strokeWidth=0.5)
        .encode(
            x=alt.X("bin_start:Q", bin="binned", title="|label − score|", scale=alt.Scale(domain=[0, 1])),
            x2="bin_end:Q",
            y=alt.Y("count:Q", title="joined predictions"),
            tooltip=[
                alt.Tooltip("bin_start:Q", format=".2f", title="from"),
                alt.Tooltip("bin_end:Q", format=".2f", title="to"),
                alt.Tooltip("count:Q", title="count"),
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
) -> alt.Chart:
    """One line per ``series`` of a ``time, series, value`` frame."""
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
            y=alt.Y("value:Q", title=y_title, scale=scale),
            color=color,
            detail="segment:N",
            tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "series:N", alt.Tooltip("value:Q", format=",.3f")],
        )
        .properties(height=height)
    )


def lag_bars(lag: pd.DataFrame, height: int = 220) -> alt.Chart:
    """Consumer lag per partition."""
    return (
        alt.Chart(lag)
        .mark_bar(color="#f58518")
        .encode(
            x=alt.X("partition:N", title="partition", sort=None),
            y=alt.Y(
                "lag:Q",
                title="messages behind",
                scale=alt.Scale(domain=[0, max(10, int(lag["lag"].max()) if not lag.empty else 0)], nice=True),
                axis=alt.Axis(format="~s", tickMinStep=1),
            ),
            tooltip=["partition:N", "lag:Q"],
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
        tooltip=["actual:N", "predicted:N", "count:Q", alt.Tooltip("share:Q", format=".1%")],
    )
    text = base.mark_text(fontSize=16, fontWeight="bold").encode(
        text=alt.Text("count:Q", format=","),
        color=alt.condition(alt.datum.share > 0.25, alt.value("white"), alt.value("black")),
    )
    return (heat + text).properties(height=height)


def importance_bars(frame: pd.DataFrame, height: int | None = None) -> alt.Chart:
    return (
        alt.Chart(frame)
        .mark_bar(color="#54a24b")
        .encode(
            x=alt.X("importance:Q", title="importance"),
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
            tooltip=["task_id:N", "state:N", alt.Tooltip("duration_s:Q", format=".1f", title="seconds")],
        )
        .properties(height=height or 60 + 32 * len(started))
    )
