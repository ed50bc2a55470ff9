"""The Predict page's frames: the pairs a person types and the predictions table."""

from __future__ import annotations

import pytest

from streamml.dashboard import frames_predict


def test_parse_pairs() -> None:
    text = "1, 31\n\n# a comment\n2 1029   # trailing\n3\t1061\n"
    assert frames_predict.parse_pairs(text) == [
        {"user_id": 1, "movie_id": 31},
        {"user_id": 2, "movie_id": 1029},
        {"user_id": 3, "movie_id": 1061},
    ]
    with pytest.raises(ValueError, match="line 2"):
        frames_predict.parse_pairs("1, 2\n1, -5")
    with pytest.raises(ValueError, match="at most 2"):
        frames_predict.parse_pairs("1 1\n2 2\n3 3", limit=2)


def test_predictions_frame_names_the_class_and_fills_missing_fields() -> None:
    frame = frames_predict.predictions_frame(
        [{"user_id": 1, "movie_id": 2, "score": 0.2, "label": 0}, {"user_id": 3, "movie_id": 4, "label": 1}]
    )
    assert list(frame.columns) == list(frames_predict.PREDICTION_COLUMNS)
    assert frame["label"].tolist() == ["dislike (< 4)", "like (>= 4)"]
    assert frame["model_version"].isna().all()
