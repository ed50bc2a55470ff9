"""Predict: score (user, movie) pairs through the API's /predict."""

from __future__ import annotations

from typing import Any

import streamlit as st

from streamml.config import Settings
from streamml.dashboard import frames_predict
from streamml.dashboard.pages.common import api_client, guard
from streamml.features.spec import LIKE_THRESHOLD


def render(settings: Settings) -> None:
    st.title("Predict")
    api = api_client(settings)
    st.caption(
        f"Will the user rate the movie {LIKE_THRESHOLD} or higher? Scored by the champion through "
        f"`POST {api.base_url}/predict`, with the user's and the movie's online features."
    )
    with st.form("predict"):
        left, right = st.columns(2)
        user_id = left.number_input("User id", min_value=0, value=1, step=1)
        movie_id = right.number_input("Movie id", min_value=0, value=1, step=1)
        more = st.text_area("More pairs (optional): one `user_id, movie_id` a line", height=100)
        submitted = st.form_submit_button("Predict", icon=":material/psychology:", type="primary")
    if not submitted:
        return
    try:
        items = [{"user_id": int(user_id), "movie_id": int(movie_id)}, *frames_predict.parse_pairs(more)]
    except ValueError as exc:
        st.error(str(exc))
        return
    predictions: list[dict[str, Any]] | None = None
    with guard("Prediction"):
        predictions = api.predict(items)
    if predictions is None:
        return
    frame = frames_predict.predictions_frame(predictions)
    if len(frame) == 1:
        row = frame.iloc[0]
        cols = st.columns(3)
        cols[0].metric("P(like)", f"{float(row['score']):.3f}")
        cols[1].metric("Label", str(row["label"]))
        cols[2].metric("Model", f"{row['model_name']} v{row['model_version']}")
        if row["cold_start"]:
            st.info("Cold start: the user or the movie has no history yet, so population features were used.")
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        column_config={
            "score": st.column_config.ProgressColumn("P(like)", min_value=0.0, max_value=1.0, format="%.3f")
        },
    )
