"""Kafka: topics, partitions, end offsets, consumer groups and their lag, and the latest messages of a topic."""

from __future__ import annotations

import time

import streamlit as st

from streamml import names
from streamml.config import Settings
from streamml.dashboard import charts, kafka_admin
from streamml.dashboard.errors import ServiceDown
from streamml.dashboard.pages.common import kafka_client, show_problem

REFRESH_SECONDS = 5


def render(settings: Settings) -> None:
    st.title("Kafka")
    st.caption(
        f"The broker at `{settings.kafka.bootstrap_servers}`. Offsets and lag refresh every {REFRESH_SECONDS} s."
    )
    show_all = st.toggle("Show test topics and groups", value=False)
    overview(settings, show_all)
    st.subheader("Latest messages", anchor=False)
    messages(settings, show_all)


@st.fragment(run_every=REFRESH_SECONDS)
def overview(settings: Settings, show_all: bool) -> None:
    try:
        admin = kafka_client(settings)
        topics = kafka_admin.list_topics(admin)
        if not show_all:
            topics = [t for t in topics if t in names.TOPICS]
        offsets = kafka_admin.topic_offsets(admin, topics)
        groups = kafka_admin.consumer_groups(admin, include_tests=show_all)
        lag = kafka_admin.group_lag(admin, groups, offsets)
    except ServiceDown as exc:
        show_problem(exc, "Kafka")
        return

    summary = kafka_admin.topic_summary(offsets)
    cols = st.columns(4)
    cols[0].metric("Topics", f"{len(summary):,}")
    cols[1].metric("Partitions", f"{len(offsets):,}")
    cols[2].metric(
        "Retained messages (all partitions)", f"{int(offsets['messages'].sum()) if not offsets.empty else 0:,}"
    )
    cols[3].metric(
        "Consumer lag (messages, all groups)",
        f"{int(lag['lag'].sum()) if not lag.empty else 0:,}",
        help="Messages the groups below have yet to consume: end offset minus committed offset, summed.",
    )

    left, right = st.columns([3, 2])
    with left:
        st.subheader("Topics", anchor=False)
        st.dataframe(
            summary,
            hide_index=True,
            column_config={
                "messages": st.column_config.NumberColumn("retained messages", format="localized"),
                "end_offsets": st.column_config.TextColumn("end offset per partition"),
            },
        )
        with st.expander("Every partition"):
            st.dataframe(
                offsets,
                hide_index=True,
                column_config={
                    "earliest": st.column_config.NumberColumn("earliest offset", format="localized"),
                    "latest": st.column_config.NumberColumn("end offset", format="localized"),
                    "messages": st.column_config.NumberColumn("retained messages", format="localized"),
                },
            )
    with right:
        st.subheader("Consumer groups", anchor=False)
        if groups:
            st.dataframe([{"group": g.group_id, "state": g.state} for g in groups], hide_index=True, width="stretch")
        else:
            st.info("No consumer groups yet.")

    st.subheader("Lag per group and partition", anchor=False)
    if lag.empty:
        st.info("No committed offsets on these topics yet.")
        return
    st.altair_chart(charts.group_lag_bars(lag), width="stretch")
    st.dataframe(
        lag,
        hide_index=True,
        width="stretch",
        column_config={
            "committed": st.column_config.NumberColumn("committed offset", format="localized"),
            "end": st.column_config.NumberColumn("end offset", format="localized"),
            "lag": st.column_config.NumberColumn("lag (messages)", format="localized"),
        },
    )
    st.caption(f"Refreshed at {time.strftime('%H:%M:%S')}.")


@st.fragment
def messages(settings: Settings, show_all: bool) -> None:
    try:
        admin = kafka_client(settings)
        topics = kafka_admin.list_topics(admin)
    except ServiceDown as exc:
        show_problem(exc, "Kafka messages")
        return
    if not show_all:
        topics = [t for t in topics if t in names.TOPICS] or topics
    if not topics:
        st.info("The broker has no topics yet.")
        return
    default = topics.index(names.TOPIC_PREDICTIONS) if names.TOPIC_PREDICTIONS in topics else 0
    left, mid, right = st.columns([3, 1, 1], vertical_alignment="bottom")
    topic = left.selectbox("Topic", topics, index=default)
    count = mid.number_input("Messages", min_value=1, max_value=200, value=15, step=5)
    right.button("Reload", icon=":material/refresh:", width="stretch")
    consumer = kafka_admin.peek_consumer(settings.kafka)
    try:
        offsets = kafka_admin.topic_offsets(admin, [topic])
        latest = kafka_admin.latest_messages(consumer, topic, offsets, n=int(count))
    except ServiceDown as exc:
        show_problem(exc, "Kafka messages")
        return
    finally:
        consumer.close()
    if latest.empty:
        st.info(f"`{topic}` holds no messages.")
        return
    st.dataframe(
        latest,
        hide_index=True,
        width="stretch",
        column_config={
            "time": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "value": st.column_config.TextColumn("value", width="large"),
        },
    )
