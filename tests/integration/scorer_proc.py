"""A scorer process for integration tests: the platform's run_scorer on the test's own topics and consumer group.

python scorer_proc.py REQUESTS PREDICTIONS DLQ GROUP                  fixed row model (no MLflow needed)
python scorer_proc.py REQUESTS PREDICTIONS DLQ GROUP MODEL EVENTS     @champion of registered MODEL, hot-reloaded
                                                                      on EVENTS (the test's model-events topic) or
                                                                      an alias move; @challenger shadowed to
                                                                      PREDICTIONS.shadow
Redis db from STREAMML_REDIS__DB, metrics port from STREAMML_SCORER__METRICS_PORT.
"""

from __future__ import annotations

import sys

import numpy as np

from streamml.config import Settings
from streamml.features import spec
from streamml.logging import configure_logging
from streamml.streaming.runners import ScorerTopics, run_scorer
from streamml.streaming.scorer import ServingModel

WEIGHTS = np.linspace(-0.5, 0.5, spec.N_FEATURES)


def row_model(matrix: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.tanh(matrix / 1000.0) @ WEIGHTS)))


def main() -> None:
    requests, predictions, dlq, group, *champion = sys.argv[1:]
    configure_logging("INFO")
    if champion:
        model_name, events = champion
        topics = ScorerTopics(requests, predictions, dlq, events, shadow=f"{predictions}.shadow")
        run_scorer(Settings(), 200, topics=topics, group=group, model_name=model_name)
    else:
        fixed = ServingModel("test", "1", row_model)
        topics = ScorerTopics(requests, predictions, dlq, f"{requests}.model-events", f"{predictions}.shadow")
        run_scorer(Settings(), 200, topics=topics, group=group, model=lambda: fixed)


if __name__ == "__main__":
    main()
