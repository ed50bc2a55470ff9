"""Streamlit entry of the dashboard (``streamml dashboard``): the pages live in ``streamml.dashboard.pages``."""

from __future__ import annotations

from functools import partial

import streamlit as st

from streamml.config import get_settings
from streamml.dashboard import auth
from streamml.dashboard.pages import common, drift, kafka, live, models, pipelines, predict

st.set_page_config(page_title="streamml", page_icon=":material/stream:", layout="wide")
settings = get_settings()
pages = [
    st.Page(partial(live.render, settings), title="Live", icon=":material/monitoring:", url_path="live", default=True),
    st.Page(partial(drift.render, settings), title="Drift", icon=":material/query_stats:", url_path="drift"),
    st.Page(partial(kafka.render, settings), title="Kafka", icon=":material/hub:", url_path="kafka"),
    st.Page(partial(models.render, settings), title="Models", icon=":material/model_training:", url_path="models"),
    st.Page(
        partial(pipelines.render, settings), title="Pipelines", icon=":material/account_tree:", url_path="pipelines"
    ),
    st.Page(partial(predict.render, settings), title="Predict", icon=":material/psychology:", url_path="predict"),
]
page = st.navigation(pages)
with st.sidebar:
    auth.sidebar(settings)
    common.service_status(settings)
page.run()
