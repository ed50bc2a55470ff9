"""Models: registry versions side by side, a version's report, promote and roll back."""

from __future__ import annotations

from typing import Any

import streamlit as st

from streamml import names
from streamml.config import Settings
from streamml.dashboard import auth, charts, frames_models
from streamml.dashboard.pages.common import api_client, guard

FLASH = "models_flash"


def render(settings: Settings) -> None:
    st.title("Models")
    api = api_client(settings)
    st.caption(f"The MLflow registry through the API at `{api.base_url}`.")
    if flash := st.session_state.pop(FLASH, None):
        st.success(flash, icon=":material/check_circle:")

    models: dict[str, Any] | None = None
    with guard("The model registry"):
        models = api.models()
    if models is not None:
        registry(settings, models)

    with st.expander("Training runs (MLflow)"), guard("Training runs"):
        st.dataframe(
            frames_models.runs_table(api.runs(limit=50)),
            hide_index=True,
            width="stretch",
            column_config={
                "start_time": st.column_config.DatetimeColumn("started (UTC)", format="YYYY-MM-DD HH:mm"),
                "streaming_auc": st.column_config.NumberColumn("streaming AUC (stream period)", format="%.4f"),
            },
        )
    with st.expander("Datasets"), guard("Datasets"):
        catalog = api.datasets_catalog()
        st.markdown("**Raw snapshots** (MinIO `raw/`)")
        st.dataframe(frames_models.datasets_table(catalog.get("snapshots") or []), hide_index=True, width="stretch")
        if catalog.get("feature_versions"):
            st.markdown("**Feature versions** (MinIO `features/`)")
            st.dataframe(frames_models.datasets_table(catalog["feature_versions"]), hide_index=True, width="stretch")


def registry(settings: Settings, models: dict[str, Any]) -> None:
    table = frames_models.versions_table(models)
    if table.empty:
        st.info(f"No version of `{models.get('name', names.MODEL_NAME)}` is registered yet: run `movielens_training`.")
        return
    aliases = models.get("aliases") or {}
    champion = aliases.get(names.ALIAS_CHAMPION)
    cols = st.columns(3)
    cols[0].metric("Registered model", str(models.get("name", names.MODEL_NAME)))
    cols[1].metric("Champion", f"v{champion}" if champion else "—")
    challenger = aliases.get(names.ALIAS_CHALLENGER)
    cols[2].metric("Challenger", f"v{challenger}" if challenger else "—")

    st.subheader("Versions", anchor=False)
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm"),
            "streaming_auc": st.column_config.NumberColumn("streaming AUC (stream period)", format="%.4f"),
        },
    )
    versions = list(table["version"])
    chosen = st.multiselect("Compare", versions, default=versions[:4], format_func=lambda v: f"v{v}")
    if chosen:
        st.dataframe(frames_models.compare_versions(models, chosen).style.format("{:.4f}", na_rep="—"), width="stretch")
        freshness = frames_models.freshness_frame(models, chosen)
        if not freshness.empty:
            st.markdown("**Freshness**: streaming AUC when feedback reaches the online features this late")
            st.altair_chart(charts.freshness_lines(freshness), width="stretch")

    st.subheader("Report", anchor=False)
    default = versions.index(champion) if champion in versions else 0
    version = st.selectbox("Version", versions, index=default, format_func=lambda v: f"v{v}", key="report_version")
    report_section(settings, version)

    st.subheader("Promote", anchor=False)
    promote_section(settings, versions, champion)


def report_section(settings: Settings, version: str) -> None:
    report: dict[str, Any] | None = None
    with guard(f"The report of v{version}"):
        report = api_client(settings).report(version)
    if report is None:
        return
    aliases = ", ".join(report.get("aliases") or [])
    st.caption(
        f"`{report.get('model_type', '')}` · created {report.get('created', '')}"
        + (f" · {aliases}" if aliases else "")
        + " · streaming: online features updated by feedback; frozen: features as of the split"
    )
    matrices = frames_models.by_mode(report.get("confusion_matrix"))
    class_reports = frames_models.by_mode(report.get("classification_report"))
    modes = sorted(dict.fromkeys([*matrices, *class_reports]), key=lambda m: m != "streaming") or [""]
    mode = modes[0]
    if len(modes) > 1:
        mode = st.segmented_control("Evaluation mode", modes, default=modes[0], key=f"mode_{version}") or modes[0]
    classes = report.get("class_names")
    left, right = st.columns(2)
    with left:
        st.markdown("**Metrics**")
        metrics = frames_models.report_metrics(report)
        st.dataframe(metrics.style.format("{:.4f}", na_rep="—"), width="stretch", height=300)
    with right:
        st.markdown(f"**Confusion matrix** {f'({mode})' if mode else ''}")
        if mode in matrices:
            st.altair_chart(
                charts.confusion_heatmap(frames_models.confusion_frame(matrices[mode], classes)), width="stretch"
            )
        else:
            st.info("This report has no confusion matrix.")
    left, right = st.columns(2)
    with left:
        st.markdown("**Feature importance** (permutation, AUC drop)")
        importance = frames_models.importance_frame(report.get("feature_importance") or [])
        if importance.empty:
            st.info("This model type reports no feature importance.")
        else:
            st.altair_chart(charts.importance_bars(importance), width="stretch")
    with right:
        st.markdown(f"**Classification report** {f'({mode})' if mode else ''}")
        if mode in class_reports:
            table = frames_models.classification_frame(class_reports[mode], classes)
            st.dataframe(
                table,
                width="stretch",
                column_config={
                    **{c: st.column_config.NumberColumn(c, format="%.3f") for c in table.columns if c != "support"},
                    "support": st.column_config.NumberColumn("support (stream rows)", format="localized"),
                },
            )
        else:
            st.info("This report has no classification report.")
        with st.expander("Parameters"):
            st.json(report.get("params") or {})


def promote_section(settings: Settings, versions: list[str], champion: str | None) -> None:
    who = auth.actor()
    if who is None:
        auth.sign_in_note("promote or roll back")
    left, right = st.columns(2)
    with left, st.form("promote"):
        candidates = [v for v in versions if v != champion] or versions
        version = st.selectbox("Make champion", candidates, format_func=lambda v: f"v{v}")
        sure = st.checkbox("Scorers switch to this version within seconds (no gate).")
        if st.form_submit_button("Promote", icon=":material/upgrade:", disabled=not versions or who is None):
            if not sure:
                st.warning("Tick the box to confirm.")
            elif who is not None:
                with guard(f"Promoting v{version}"):
                    result = api_client(settings).promote(version, actor=who)
                    st.session_state[FLASH] = f"v{version} is the champion now. {result}"
                    st.rerun()
    with right, st.form("rollback"):
        st.markdown("Put the previous champion back.")
        if st.form_submit_button("Roll back", icon=":material/undo:", disabled=who is None) and who is not None:
            with guard("Rolling back"):
                result = api_client(settings).rollback(actor=who)
                st.session_state[FLASH] = f"Rolled back: {result}"
                st.rerun()
