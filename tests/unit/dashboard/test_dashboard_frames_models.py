"""The Models page's frames from the API's registry and report JSON."""

from __future__ import annotations

import pandas as pd
import pytest

from streamml.dashboard import frames_models

MODELS = {
    "name": "movielens-like",
    "aliases": {"champion": "9", "challenger": "10"},
    "versions": [
        {"version": "9", "aliases": ["champion"], "run_id": "a", "created": "2026-01-01T10:00:00+00:00",
         "model_type": "hgb", "metrics": {"streaming_auc": 0.81, "frozen_auc": 0.67, "zeta": 1.0}},
        {"version": "10", "aliases": ["challenger"], "run_id": "b", "created": "2026-01-02T10:00:00Z",
         "model_type": "logreg", "metrics": {"streaming_auc": 0.79, "frozen_auc": float("nan")}},
    ],
}  # fmt: skip


def test_versions_table_newest_first() -> None:
    table = frames_models.versions_table(MODELS)
    assert table["version"].tolist() == ["10", "9"]  # numeric, not lexicographic
    assert table["aliases"].tolist() == ["challenger", "champion"]
    assert table["created"].iloc[0] == pd.Timestamp("2026-01-02T10:00:00Z")
    assert frames_models.versions_table({"versions": []}).empty


def test_compare_versions_side_by_side() -> None:
    frame = frames_models.compare_versions(MODELS)
    assert list(frame.columns) == ["v10 (challenger)", "v9 (champion)"]
    assert list(frame.index) == ["streaming_auc", "frozen_auc", "zeta"]  # the gate metric first
    assert frame.loc["streaming_auc"].tolist() == [0.79, 0.81]
    assert pd.isna(frame.loc["frozen_auc", "v10 (challenger)"]) and pd.isna(frame.loc["zeta", "v10 (challenger)"])
    assert list(frames_models.compare_versions(MODELS, ["9"]).columns) == ["v9 (champion)"]


def test_confusion_frame_cells() -> None:
    cells = frames_models.confusion_frame([[50, 10], [20, 20]], ["dislike", "like"])
    assert cells[["actual", "predicted", "count"]].values.tolist() == [
        ["dislike (< 4)", "dislike (< 4)", 50],
        ["dislike (< 4)", "like (>= 4)", 10],
        ["like (>= 4)", "dislike (< 4)", 20],
        ["like (>= 4)", "like (>= 4)", 20],
    ]
    assert cells["share"].sum() == pytest.approx(1.0) and cells["share"].iloc[0] == pytest.approx(0.5)


REPORT = {"accuracy": 0.7, "dislike": {"precision": 0.8, "recall": 0.6, "f1-score": 0.69, "support": 60.0},
          "like": {"precision": 0.6, "recall": 0.8, "f1-score": 0.69, "support": 40.0},
          "macro avg": {"precision": 0.7, "recall": 0.7, "f1-score": 0.69, "support": 100.0}}  # fmt: skip


def test_by_mode_accepts_one_or_per_mode_entries() -> None:
    assert frames_models.by_mode([[1, 2], [3, 4]]) == {"": [[1, 2], [3, 4]]}
    assert frames_models.by_mode({"streaming": [[1, 2], [3, 4]], "frozen": [[4, 3], [2, 1]]}).keys() == {
        "streaming",
        "frozen",
    }
    assert frames_models.by_mode(REPORT) == {"": REPORT}
    assert frames_models.by_mode({"streaming": REPORT, "frozen": REPORT}).keys() == {"streaming", "frozen"}
    assert frames_models.by_mode(None) == {} and frames_models.by_mode({}) == {}


def test_classification_frame_names_the_classes() -> None:
    table = frames_models.classification_frame(REPORT, ["dislike", "like"])
    assert list(table.index) == ["accuracy", "dislike (< 4)", "like (>= 4)", "macro avg"]
    assert table.loc["like (>= 4)", "recall"] == 0.8 and table.loc["accuracy", "f1-score"] == 0.7
    numeric = frames_models.classification_frame({"0": REPORT["dislike"], "1": REPORT["like"]})
    assert list(numeric.index) == ["dislike (< 4)", "like (>= 4)"]


def test_report_metrics_puts_the_models_metrics_before_baselines() -> None:
    report = {"metrics": {"frozen": {"auc": 0.6, "baseline_user_auc": 0.5}, "streaming": {"log_loss": 0.5, "auc": 0.8,
              "baseline_global_auc": 0.5}}}  # fmt: skip
    frame = frames_models.report_metrics(report)
    assert list(frame.columns) == ["streaming", "frozen"]
    assert list(frame.index) == ["auc", "log_loss", "baseline_global_auc", "baseline_user_auc"]
    assert frame.loc["auc"].tolist() == [0.8, 0.6] and pd.isna(frame.loc["log_loss", "frozen"])


def test_importance_frame_sorted_and_capped() -> None:
    frame = frames_models.importance_frame([{"feature": f"f{i}", "importance": i / 10} for i in range(30)], top=5)
    assert frame["feature"].tolist() == ["f29", "f28", "f27", "f26", "f25"]


def test_runs_and_datasets_tables() -> None:
    runs = frames_models.runs_table([{"run_id": "r", "run_name": "hgb-fv1", "status": "FINISHED",
                                "start_time": 1_767_225_600_000, "params": {"model_type": "hgb"},
                                "metrics": {"streaming_auc": 0.8}}])  # fmt: skip
    assert runs.iloc[0]["start_time"] == pd.Timestamp("2026-01-01", tz="UTC")
    assert runs.iloc[0]["model_type"] == "hgb" and runs.iloc[0]["streaming_auc"] == 0.8
    flat = frames_models.datasets_table([{"snapshot": "s1", "ratings": 100, "md5": {"a": "b"}}])
    assert flat.columns.tolist() == ["snapshot", "ratings"]
    nested = frames_models.datasets_table(
        [{"snapshot": "s2", "created": "2026-01-01T00:00:00Z", "rows": {"ratings": 5}}]
    )
    assert nested.iloc[0]["ratings"] == 5 and nested.iloc[0]["created"] == pd.Timestamp("2026-01-01", tz="UTC")


def test_freshness_frame_has_a_curve_per_version_that_logged_one() -> None:
    models = {
        "versions": [
            {"version": "3", "aliases": ["champion"], "metrics": {"streaming_auc": 0.853, "streaming_auc_lag10": 0.845,
                                                                 "streaming_auc_lag3600": 0.729}},
            {"version": "2", "aliases": [], "metrics": {"streaming_auc": 0.811}},  # before the curve was logged
        ]
    }  # fmt: skip
    frame = frames_models.freshness_frame(models)
    assert frame.values.tolist() == [
        ["v3 (champion)", 0, 0.853],
        ["v3 (champion)", 10, 0.845],
        ["v3 (champion)", 3600, 0.729],
    ]
    assert frames_models.freshness_frame(models, ["2"]).empty
