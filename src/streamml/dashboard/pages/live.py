"""Live: what the metrics aggregator publishes, refreshed every few seconds without reloading the page."""

from __future__ import annotations

import time

import streamlit as st

from streamml import names
from streamml.config import Settings
from streamml.dashboard import charts, frames_live, labels
from streamml.dashboard.errors import ServiceDown
from streamml.dashboard.labels import fmt, labelled
from streamml.dashboard.live_metrics import LiveView, read_live
from streamml.dashboard.pages.common import redis_client, show_problem
from streamml.streaming.metrics import MetricsSnapshot

REFRESH_SECONDS = 3
STALE_SECONDS = 30
HISTORY_MINUTES = 15
HISTORY_SNAPSHOTS = int(HISTORY_MINUTES * 60 / labels.PUBLISH_SECONDS)
QUALITY_LABELS = {"auc": "AUC", "accuracy": "accuracy", "mae": "MAE"}
QUALITY_COLORS = {"AUC": "#4c78a8", "accuracy": "#54a24b", "MAE": "#e45756"}
LATENCY_LABELS = {"latency_p50_ms": "p50", "latency_p99_ms": "p99"}


def render(settings: Settings) -> None:
    st.title("Live")
    st.caption(
        "Predictions joined with their true ratings as feedback arrives (Redis `metrics:*`, published by the "
        f"metrics aggregator every {labels.PUBLISH_SECONDS:g} s). Charts over time cover the last {HISTORY_MINUTES} "
        f"minutes. Refreshes every {REFRESH_SECONDS} s."
    )
    live_panel(settings)


@st.fragment(run_every=REFRESH_SECONDS)
def live_panel(settings: Settings) -> None:
    try:
        view = read_live(redis_client(settings.redis), history_limit=HISTORY_SNAPSHOTS)
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
    tiles(view, snap)

    left, right = st.columns(2)
    # The keyed container lets the browser test find the histogram (class st-key-error-histogram).
    with left, st.container(key="error-histogram"):
        st.subheader("Absolute error", anchor=False)
        hist = frames_live.error_histogram(view.errors)
        st.altair_chart(charts.error_histogram(hist), width="stretch")
        st.caption(f"{len(view.errors):,} most recent joined predictions (|true label − score|).")
    with right:
        st.subheader("Rolling quality", anchor=False)
        quality = frames_live.long_series(view.history, list(QUALITY_LABELS), QUALITY_LABELS)
        if quality.empty:
            st.info("No joined events in the history yet.")
        else:
            st.altair_chart(
                charts.lines(quality, "AUC · accuracy · MAE (0–1)", y_domain=(0, 1), colors=QUALITY_COLORS),
                width="stretch",
            )
        joined = snap.joined_total if snap else 0
        st.caption(
            f"Each point: one snapshot over its last joined predictions (at most {labels.QUALITY_WINDOW:,}; now "
            f"{snap.window if snap else 0:,}). {joined:,} joined {labels.SINCE_START}."
        )

    left, right = st.columns(2)
    with left:
        st.subheader("Throughput", anchor=False)
        speed = frames_live.long_series(view.history, ["throughput_per_s"], {"throughput_per_s": "scored"})
        st.altair_chart(charts.lines(speed, "predictions/s", height=220, y_format=charts.RATE_FORMAT), width="stretch")
        st.caption(
            f"Each point: the predictions scored in the {labels.PUBLISH_SECONDS:g} s before a snapshot, per second."
        )
    with right:
        st.subheader("End-to-end latency", anchor=False)
        latency = frames_live.long_series(view.history, list(LATENCY_LABELS), LATENCY_LABELS)
        st.altair_chart(charts.lines(latency, "latency (ms)", height=220, y_format=charts.MS_FORMAT), width="stretch")
        st.caption(f"Each point: p50 and p99 of the {labels.LATENCY} predictions, from request sent to scored.")

    left, right = st.columns([1, 2])
    with left:
        st.subheader("Consumer lag per partition", anchor=False)
        if snap and snap.lag:
            st.altair_chart(charts.lag_bars(frames_live.lag_frame(snap.lag)), width="stretch")
            st.caption(f"Group `{names.GROUP_SCORER}` on `{names.TOPIC_REQUESTS}`, at the latest snapshot.")
        else:
            st.info("No lag reported yet.")
    with right:
        st.subheader("Recent predictions", anchor=False)
        st.dataframe(
            view.recent,
            hide_index=True,
            height=260,
            column_config={
                "y_pred": st.column_config.ProgressColumn(
                    "score (P(like))", min_value=0.0, max_value=1.0, format="%.3f"
                ),
                "y_true": st.column_config.NumberColumn("liked (true label)", format="%d"),
                "absolute_error": st.column_config.NumberColumn("|error|", format="%.3f"),
                "latency_ms": st.column_config.NumberColumn("latency (ms)", format="%.0f"),
                "event_time": st.column_config.DatetimeColumn("event time (UTC)", format="YYYY-MM-DD HH:mm"),
            },
        )
    updated = time.strftime("%H:%M:%S", time.localtime(snap.at)) if snap else "—"
    st.caption(f"Metrics published at {updated}; page refreshed at {time.strftime('%H:%M:%S')}.")


def tiles(view: LiveView, snap: MetricsSnapshot | None) -> None:
    """The latest snapshot's numbers, four a row: quality, speed, freshness, totals. A caption above each row says
    the window its numbers are computed over; each label says its unit."""
    joined = labels.joined_window(snap.window if snap else None)
    st.caption(f"**Quality** over the {joined} predictions")
    row = st.columns(4)
    row[0].metric("Model version serving", f"v{view.model_version}" if view.model_version else "—")
    row[1].metric("AUC", fmt(snap.auc if snap else None), help="Rolling ROC AUC of the scores against the true labels.")
    row[2].metric(
        labelled("Accuracy", "%"), fmt(snap.accuracy * 100 if snap and snap.accuracy is not None else None, ".1f")
    )
    row[3].metric("MAE", fmt(snap.mae if snap else None), help="Mean |true label − score|.")

    st.caption(
        f"**Speed**: throughput over the {labels.THROUGHPUT}, latency over the {labels.LATENCY} predictions, "
        "lag at the latest snapshot"
    )
    row = st.columns(4)
    row[0].metric(labelled("Throughput", "predictions/s"), fmt(snap.throughput_per_s if snap else None, ",.1f"))
    row[1].metric(
        labelled("Latency p50", "ms"),
        fmt(snap.latency_p50_ms if snap else None, ",.0f"),
        help="From when a request was sent to when the scorer scored it.",
    )
    row[2].metric(labelled("Latency p99", "ms"), fmt(snap.latency_p99_ms if snap else None, ",.0f"))
    row[3].metric(
        labelled("Scorer lag", "requests"),
        fmt(sum(snap.lag.values()) if snap and snap.lag else None, ","),
        help="Requests not yet scored, summed over partitions.",
    )

    st.caption(
        f"**Freshness**: feedback lag over the {labels.FEEDBACK_LAG} ratings, staleness over the {joined} predictions"
    )
    row = st.columns(4)
    row[0].metric(
        labelled("Feedback lag p50", "ms"),
        fmt(snap.applied_p50_ms if snap else None, ",.0f"),
        help="From when the true rating was sent to when the feature updater applied it to the online features.",
    )
    row[1].metric(labelled("Feedback lag p99", "ms"), fmt(snap.applied_p99_ms if snap else None, ",.0f"))
    row[2].metric(
        labelled("Stale predictions", "%"),
        fmt(snap.stale_share * 100 if snap and snap.stale_share is not None else None, ".1f"),
        help="Share of joined predictions scored while an earlier rating of the same user was not applied yet.",
    )
    row[3].metric(
        labelled("Missing ratings", "mean"),
        fmt(snap.stale_mean if snap else None, ".2f"),
        help="Mean number of the user's earlier ratings not yet applied when a prediction was scored.",
    )

    st.caption(f"**Totals** {labels.SINCE_START}")
    row = st.columns(4)
    row[0].metric(
        "DLQ messages", fmt(snap.dlq_total if snap else None, ","), help=f"Requests sent to {names.TOPIC_REQUESTS_DLQ}."
    )
    row[1].metric(
        labelled("Refused", "messages"),
        fmt(snap.refused_total if snap else None, ","),
        help="Unreadable predictions (dead-lettered) and feedback (counted) on the aggregator's topics.",
    )
    row[2].metric(
        labelled("Joined", "predictions"),
        fmt(snap.joined_total if snap else None, ","),
        help="Predictions matched with their true rating.",
    )
    row[3].metric("Online feature version", f"v{view.feature_version}" if view.feature_version else "—")
