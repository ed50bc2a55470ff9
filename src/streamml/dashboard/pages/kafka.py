"""Kafka: topics, partitions, end offsets, consumer groups and their lag, and the latest messages of a topic."""

from __future__ import annotations

import time

import altair as alt
import streamlit as st

from streamml import names
from streamml.config import Settings
from streamml.dashboard import queries
from streamml.dashboard.pages.common import kafka_admin, show_problem
from streamml.dashboard.queries import ServiceDown

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
        admin = kafka_admin(settings)
        topics = queries.list_topics(admin)
        if not show_all:
            topics = [t for t in topics if t in names.TOPICS]
        offsets = queries.topic_offsets(admin, topics)
        groups = queries.consumer_groups(admin, include_tests=show_all)
        lag = queries.group_lag(admin, groups, offsets)
    except ServiceDown as exc:
        show_problem(exc, "Kafka")
        return

    summary = queries.topic_summary(offsets)
    cols = st.columns(4)
    cols[0].metric("Topics", f"{len(summary):,}")
    cols[1].metric("Partitions", f"{len(offsets):,}")
    cols[2].metric("Retained messages", f"{int(offsets['messages'].sum()) if not offsets.empty else 0:,}")
    cols[3].metric("Total consumer lag", f"{int(lag['lag'].sum()) if not lag.empty else 0:,}")

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
            st.dataframe(offsets, hide_index=True)
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
    chart_data = lag.assign(where=lag["topic"] + " / " + lag["partition"].astype(str))
    chart = (
        alt.Chart(chart_data)
        .mark_bar()
        .encode(
            x=alt.X("where:N", title="topic / partition", sort=None),
            y=alt.Y("lag:Q", title="messages behind", scale=alt.Scale(domainMin=0)),
            color=alt.Color("group:N", title="group"),
            xOffset="group:N",
            tooltip=["group:N", "topic:N", "partition:Q", "committed:Q", "end:Q", "lag:Q"],
        )
        .properties(height=240)
    )
    st.altair_chart(chart, width="stretch")
    st.dataframe(lag, hide_index=True, width="stretch")
    st.caption(f"Refreshed at {time.strftime('%H:%M:%S')}.")


@st.fragment
def messages(settings: Settings, show_all: bool) -> None:
    try:
        admin = kafka_admin(settings)
        topics = queries.list_topics(admin)
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
    consumer = queries.peek_consumer(settings.kafka)
    try:
        offsets = queries.topic_offsets(admin, [topic])
        latest = queries.latest_messages(consumer, topic, offsets, n=int(count))
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
