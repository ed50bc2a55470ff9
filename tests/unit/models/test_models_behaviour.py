"""Model behaviour on the real MovieLens data: the default model must beat the baselines on the stream.

Features are computed in-process by the one feature definition (spec replay), not read from the running stack.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamml.data.movielens import load
from streamml.models import evaluate as ev
from streamml.models.dataset import dataset_from_ratings
from streamml.models.train import ModelConfig, train_and_evaluate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def movielens() -> Path:
    directory = os.environ.get("STREAMML_MOVIELENS_DIR", "").strip()
    if not directory:
        pytest.fail(
            "STREAMML_MOVIELENS_DIR is not set: point it at an ml-latest-small directory (ratings.csv, movies.csv) "
            "to run the model behaviour tests"
        )
    return Path(directory)


def test_default_model_beats_the_baselines_on_the_stream(movielens: Path) -> None:
    dataset = dataset_from_ratings(*load(movielens))
    _, evaluation = train_and_evaluate(dataset, ModelConfig(importance_rows=0))
    streaming, frozen = evaluation.table[ev.STREAMING], evaluation.table[ev.FROZEN]

    assert streaming[ev.MODEL]["auc"] > streaming[ev.BASELINE_USER]["auc"] + 0.02
    assert streaming[ev.MODEL]["auc"] > streaming[ev.BASELINE_MOVIE]["auc"]
    assert streaming[ev.MODEL]["log_loss"] < streaming[ev.BASELINE_USER]["log_loss"]
    assert streaming[ev.MODEL]["log_loss"] < streaming[ev.BASELINE_GLOBAL]["log_loss"]
    # Features that learn from the stream are worth it: frozen features lose much of the quality.
    assert frozen[ev.MODEL]["auc"] < streaming[ev.MODEL]["auc"] - 0.05
