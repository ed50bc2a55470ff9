"""Metrics and baselines on tiny arrays, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamml.features.spec import FEATURE_NAMES, N_FEATURES
from streamml.models import evaluate as ev
from streamml.models import report

Y = np.array([0, 0, 1, 1])
P = np.array([0.1, 0.4, 0.35, 0.8])


def test_classification_metrics_match_hand_computation() -> None:
    metrics = ev.classification_metrics(Y, P, threshold=0.5)
    # Pairs (positive, negative) ranked right: (0.35 > 0.1), (0.8 > 0.1), (0.8 > 0.4); wrong: (0.35 < 0.4).
    assert metrics["auc"] == pytest.approx(0.75)
    expected_log_loss = -np.mean(np.log([0.9, 0.6, 0.35, 0.8]))
    assert metrics["log_loss"] == pytest.approx(expected_log_loss)
    assert metrics["brier"] == pytest.approx(np.mean((P - Y) ** 2))
    # Predicted likes: only 0.8 -> tp=1, fp=0, fn=1, tn=2.
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["precision"] == pytest.approx(1.0)
    assert metrics["recall"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert set(metrics) == set(ev.METRICS)


def test_threshold_changes_the_hard_metrics_only() -> None:
    low = ev.classification_metrics(Y, P, threshold=0.3)  # predicted likes: 0.4, 0.35, 0.8
    high = ev.classification_metrics(Y, P, threshold=0.5)
    assert low["auc"] == high["auc"] and low["log_loss"] == high["log_loss"]
    assert low["recall"] == pytest.approx(1.0)
    assert low["precision"] == pytest.approx(2 / 3)


def test_single_class_has_no_auc_and_constant_scores_have_auc_one_half() -> None:
    assert math.isnan(ev.classification_metrics(np.array([1, 1]), np.array([0.2, 0.9]))["auc"])
    constant = ev.classification_metrics(Y, np.full(4, 0.3))
    assert constant["auc"] == pytest.approx(0.5)
    assert constant["precision"] == 0.0  # nothing predicted positive
    assert constant["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.7, 0.3, 0.3])))


def test_certain_wrong_predictions_give_a_finite_log_loss() -> None:
    metrics = ev.classification_metrics(np.array([0, 1]), np.array([1.0, 0.0]))
    assert math.isfinite(metrics["log_loss"]) and metrics["log_loss"] > 30


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one length"):
        ev.classification_metrics(Y, P[:3])


def _matrix(user_like: list[float], movie_like: list[float]) -> np.ndarray:
    matrix = np.zeros((len(user_like), N_FEATURES))
    matrix[:, FEATURE_NAMES.index("user_like_rate")] = user_like
    matrix[:, FEATURE_NAMES.index("movie_like_rate")] = movie_like
    matrix[:, FEATURE_NAMES.index("user_mean_shrunk")] = 9.0  # a distractor next to the right column
    return matrix


def test_baselines_read_the_like_rate_features_and_the_history_rate() -> None:
    scores = ev.baseline_scores(_matrix([0.2, 0.9], [0.6, 0.1]), history_like_rate=0.45)
    assert scores[ev.BASELINE_GLOBAL].tolist() == [0.45, 0.45]
    assert scores[ev.BASELINE_USER].tolist() == [0.2, 0.9]
    assert scores[ev.BASELINE_MOVIE].tolist() == [0.6, 0.1]
    assert set(scores) == set(ev.BASELINES)


def test_evaluate_scores_model_and_baselines_in_both_modes_with_prefixed_names() -> None:
    labels = np.array([0, 1, 0, 1])
    streaming = _matrix([0.1, 0.9, 0.2, 0.8], [0.5, 0.5, 0.5, 0.5])  # user baseline ranks perfectly
    frozen = _matrix([0.9, 0.1, 0.8, 0.2], [0.5, 0.5, 0.5, 0.5])  # and exactly backwards
    stream = ev.StreamSet(labels, {ev.STREAMING: streaming, ev.FROZEN: frozen}, history_like_rate=0.5)
    evaluation = ev.evaluate(lambda x: x[:, FEATURE_NAMES.index("user_like_rate")], stream)
    metrics = evaluation.metrics()
    assert metrics["streaming_auc"] == pytest.approx(1.0)
    assert metrics["frozen_auc"] == pytest.approx(0.0)
    assert metrics["streaming_baseline_user_auc"] == pytest.approx(1.0)
    assert metrics["frozen_baseline_user_auc"] == pytest.approx(0.0)
    assert metrics["streaming_baseline_movie_auc"] == pytest.approx(0.5)
    assert metrics["frozen_baseline_global_log_loss"] == pytest.approx(math.log(2))
    assert len(metrics) == len(ev.MODES) * (1 + len(ev.BASELINES)) * len(ev.METRICS)
    table = report.markdown_table(report.table_rows(evaluation.table, "hgb"))
    assert table.splitlines()[2] == "| hgb | 1.0000 | " + f"{metrics['streaming_log_loss']:.4f} | 0.0000 | " + (
        f"{metrics['frozen_log_loss']:.4f} |"
    )
    assert [line.split(" | ")[0] for line in table.splitlines()[3:]] == [f"| {name}" for name in ev.BASELINES]


def test_stream_set_refuses_a_missing_mode_or_misaligned_rows() -> None:
    matrix = _matrix([0.1, 0.2], [0.1, 0.2])
    with pytest.raises(ValueError, match="frozen"):
        ev.StreamSet(np.array([0, 1]), {ev.STREAMING: matrix}, 0.5)
    with pytest.raises(ValueError, match="shape"):
        ev.StreamSet(np.array([0, 1, 1]), {ev.STREAMING: matrix, ev.FROZEN: matrix}, 0.5)
