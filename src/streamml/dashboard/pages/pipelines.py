"""Pipelines: the Airflow DAGs, their runs and task states; trigger a run and follow it."""

from __future__ import annotations

from typing import Any

import streamlit as st

from streamml import names
from streamml.config import Settings
from streamml.dashboard import auth, charts, frames_pipelines
from streamml.dashboard.pages.common import api_client, guard

REFRESH_SECONDS = 3
FOLLOW = "pipelines_follow"


def render(settings: Settings) -> None:
    st.title("Pipelines")
    api = api_client(settings)
    st.caption(f"Airflow DAGs through the API at `{api.base_url}`. Runs refresh every {REFRESH_SECONDS} s.")
    dags: list[dict[str, Any]] | None = None
    with guard("The DAG list"):
        dags = api.pipelines()
    if dags is None:
        return
    if not dags:
        st.info("Airflow has not parsed any DAG yet.")
        return
    ids = [d["dag_id"] for d in dags]
    default = ids.index(names.DAG_TRAINING) if names.DAG_TRAINING in ids else 0
    dag_id = st.selectbox("DAG", ids, index=default)
    dag = dags[ids.index(dag_id)]
    if dag.get("description"):
        st.caption(str(dag["description"]).strip().splitlines()[0])
    if dag.get("is_paused"):
        st.info("This DAG is paused: triggered runs stay queued until it is unpaused in Airflow.")

    who = auth.actor()
    if who is None:
        auth.sign_in_note("trigger a run")
    with st.form("trigger"):
        conf_text = st.text_area("Run conf (JSON object, optional)", value="{}", height=68)
        submitted = st.form_submit_button(f"Trigger {dag_id}", icon=":material/play_arrow:", disabled=who is None)
        if submitted and who is not None:
            try:
                conf = frames_pipelines.parse_conf(conf_text)
            except ValueError as exc:
                st.error(str(exc))
            else:
                with guard(f"Triggering {dag_id}"):
                    result = api.trigger(dag_id, conf, actor=who)
                    st.session_state[FOLLOW] = {"dag_id": dag_id, "run_id": result["run_id"]}
                    st.success(f"Triggered run `{result['run_id']}` ({result.get('state', 'queued')}).")
    runs_panel(settings, dag_id)


@st.fragment(run_every=REFRESH_SECONDS)
def runs_panel(settings: Settings, dag_id: str) -> None:
    runs: list[dict[str, Any]] | None = None
    with guard(f"Runs of {dag_id}"):
        runs = api_client(settings).dag_runs(dag_id, limit=10)
    if runs is None:
        return
    if not runs:
        st.info(f"`{dag_id}` has not run yet.")
        return
    follow = st.session_state.get(FOLLOW) or {}
    followed = next((r for r in runs if follow.get("dag_id") == dag_id and r["run_id"] == follow.get("run_id")), None)
    run = followed or runs[0]
    progress = frames_pipelines.run_progress(run)
    st.subheader(("Following " if followed else "Latest run ") + f"`{progress.run_id}`", anchor=False)
    label = f"**{progress.state}**: {progress.done} of {progress.total} tasks done"
    st.progress(progress.fraction, text=label)
    if progress.finished and followed:
        (st.success if progress.state == "success" else st.error)(f"Run {progress.run_id} ended {progress.state}.")
    for failure in run.get("failures") or []:
        st.error(
            f"**Task `{failure['task_id']}` failed** (try {failure['try_number']}): {failure['error']}\n\n"
            f"[Its log in the Airflow UI]({failure['log_url']})",
            icon=":material/error:",
        )
    left, right = st.columns([2, 3])
    with left:
        st.dataframe(
            progress.tasks[["task_id", "state", "try_number", "duration_s"]],
            hide_index=True,
            width="stretch",
            column_config={"duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f")},
        )
    with right:
        if progress.tasks["start_date"].notna().any():
            st.altair_chart(charts.task_timeline(progress.tasks), width="stretch")
        else:
            st.info("No task has started yet.")
    st.subheader("Recent runs", anchor=False)
    st.dataframe(
        frames_pipelines.dag_runs_table(runs),
        hide_index=True,
        width="stretch",
        column_config={
            "start_date": st.column_config.DatetimeColumn("started (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "end_date": st.column_config.DatetimeColumn("ended (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        },
    )
