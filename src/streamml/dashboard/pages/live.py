"""Live: what the metrics aggregator publishes, refreshed every few seconds without reloading the page."""

from __future__ import annotations

import time

import streamlit as st

from streamml.config import Settings
from streamml.dashboard import charts, queries
from streamml.dashboard.pages.common import fmt, redis_client, show_problem
from streamml.dashboard.queries import ServiceDown

REFRESH_SECONDS = 3
STALE_SECONDS = 30
HISTORY_SNAPSHOTS = 450  # 15 minutes of snapshots published every 2 s
QUALITY_LABELS = {"auc": "AUC", "accuracy": "accuracy", "mae": "MAE"}
QUALITY_COLORS = {"AUC": "#4c78a8", "accuracy": "#54a24b", "MAE": "#e45756"}
LATENCY_LABELS = {"latency_p50_ms": "p50", "latency_p99_ms": "p99"}


def render(settings: Settings) -> None:
    st.title("Live")
    st.caption(
        "Predictions joined with their true ratings as feedback arrives (Redis `metrics:*`, published by the "
        "metrics aggregator every 2 s). Charts over time cover the last 15 minutes. "
        f"Refreshes every {REFRESH_SECONDS} s."
    )
    live_panel(settings)


@st.fragment(run_every=REFRESH_SECONDS)
def live_panel(settings: Settings) -> None:
    try:
        view = queries.read_live(redis_client(settings), history_limit=HISTORY_SNAPSHOTS)
    except ServiceDown as exc:
        show_problem(exc, "Live metrics")
        return
    if view.snapshot is None and not view.errors:
        st.info(
            "No metrics yet. They appear once predictions and feedback flow: train a champion (Pipelines page, "
            "`movielens_training`), then start a replay with `streamml stack start replayer`.",
            icon=":material/hourglass_empty:",
        )
        return
    snap = view.snapshot
    age = view.age_seconds(time.time())
    if age is not None and age > STALE_SECONDS:
        st.warning(
            f"The latest metrics are {age:,.0f} s old: the metrics aggregator is not publishing "
            "(see `./run.sh logs metrics-aggregator`). Showing the last values.",
            icon=":material/schedule:",
        )

    row = st.columns(5)
    row[0].metric("Model version serving", f"v{view.model_version}" if view.model_version else "—")
    row[1].metric("Rolling AUC", fmt(snap.auc if snap else None), help="Over the last joined events (window below).")
    row[2].metric("Rolling accuracy", fmt(snap.accuracy * 100 if snap and snap.accuracy is not None else None,
                                          ".1f", " %"))  # fmt: skip
    row[3].metric("Rolling MAE", fmt(snap.mae if snap else None), help="Mean |label − score| over the window.")
    row[4].metric("Throughput", fmt(snap.throughput_per_s if snap else None, ",.1f", " /s"))
    row = st.columns(5)
    row[0].metric("Latency p50", fmt(snap.latency_p50_ms if snap else None, ",.0f", " ms"))
    row[1].metric("Latency p99", fmt(snap.latency_p99_ms if snap else None, ",.0f", " ms"))
    row[2].metric(
        "DLQ messages",
        fmt(snap.dlq_total if snap else None, ","),
        help="Requests sent to ratings.requests.dlq.v1 since the metrics aggregator started.",
    )
    row[3].metric("Scorer lag", fmt(sum(snap.lag.values()) if snap and snap.lag else None, ","),
                  help="Requests not yet scored, summed over partitions.")  # fmt: skip
    row[4].metric("Online feature version", f"v{view.feature_version}" if view.feature_version else "—")
    row = st.columns(5)
    row[0].metric(
        "Feedback lag p50",
        fmt(snap.applied_p50_ms if snap else None, ",.0f", " ms"),
        help="From when the true rating was sent to when the feature updater applied it to the online features.",
    )
    row[1].metric("Feedback lag p99", fmt(snap.applied_p99_ms if snap else None, ",.0f", " ms"))
    row[2].metric(
        "Stale predictions",
        fmt(snap.stale_share * 100 if snap and snap.stale_share is not None else None, ".1f", " %"),
        help="Share of joined predictions scored while an earlier rating of the same user was not applied yet.",
    )
    row[3].metric(
        "Missing ratings",
        fmt(snap.stale_mean if snap else None, ".2f"),
        help="Mean number of the user's earlier ratings not yet applied when a prediction was scored.",
    )
    row[4].metric(
        "Refused",
        fmt(snap.refused_total if snap else None, ","),
        help="Unreadable predictions (dead-lettered) and feedback (counted) on the aggregator's topics.",
    )

    left, right = st.columns(2)
    # The keyed container lets the browser test find the histogram (class st-key-error-histogram).
    with left, st.container(key="error-histogram"):
        st.subheader("Absolute error", anchor=False)
        hist = queries.error_histogram(view.errors)
        st.altair_chart(charts.error_histogram(hist), width="stretch")
        st.caption(f"{len(view.errors):,} most recent joined predictions (|true label − score|).")
    with right:
        st.subheader("Rolling quality", anchor=False)
        quality = queries.long_series(view.history, list(QUALITY_LABELS), QUALITY_LABELS)
        if quality.empty:
            st.info("No joined events in the history yet.")
        else:
            st.altair_chart(charts.lines(quality, "value", y_domain=(0, 1), colors=QUALITY_COLORS),
                            width="stretch")  # fmt: skip
        joined = snap.joined_total if snap else 0
        st.caption(f"window: {snap.window if snap else 0:,} events; {joined:,} joined since the aggregator started.")

    left, right = st.columns(2)
    with left:
        st.subheader("Throughput", anchor=False)
        speed = queries.long_series(view.history, ["throughput_per_s"], {"throughput_per_s": "scored / s"})
        st.altair_chart(charts.lines(speed, "requests / s", height=220), width="stretch")
    with right:
        st.subheader("End-to-end latency", anchor=False)
        latency = queries.long_series(view.history, list(LATENCY_LABELS), LATENCY_LABELS)
        st.altair_chart(charts.lines(latency, "ms", height=220), width="stretch")

    left, right = st.columns([1, 2])
    with left:
        st.subheader("Consumer lag per partition", anchor=False)
        if snap and snap.lag:
            st.altair_chart(charts.lag_bars(queries.lag_frame(snap.lag)), width="stretch")
            st.caption("Group `streamml-scorer` on `ratings.requests.v1`.")
        else:
            st.info("No lag reported yet.")
    with right:
        st.subheader("Recent predictions", anchor=False)
        st.dataframe(
            view.recent,
            hide_index=True,
            height=260,
            column_config={
                "y_pred": st.column_config.ProgressColumn("score", min_value=0.0, max_value=1.0, format="%.3f"),
                "y_true": st.column_config.NumberColumn("liked", format="%d"),
                "absolute_error": st.column_config.NumberColumn("|error|", format="%.3f"),
                "latency_ms": st.column_config.NumberColumn("latency ms", format="%.0f"),
                "event_time": st.column_config.DatetimeColumn("event time", format="YYYY-MM-DD HH:mm"),
            },
        )
    updated = time.strftime("%H:%M:%S", time.localtime(snap.at)) if snap else "—"
    st.caption(f"Metrics published at {updated}; page refreshed at {time.strftime('%H:%M:%S')}.")
