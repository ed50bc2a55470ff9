"""A scorer process for reliability tests: the platform's Worker and ScorerHandler on the test's own topics.

python scorer_proc.py REQUESTS_TOPIC PREDICTIONS_TOPIC DLQ_TOPIC GROUP     (Redis db from STREAMML_REDIS__DB)
"""

from __future__ import annotations

import sys

import numpy as np
from confluent_kafka import Consumer, Producer

from streamml.config import Settings
from streamml.features import spec
from streamml.stores.features import RedisFeatureStore, redis_client
from streamml.streaming.clients import consumer_config, producer_config
from streamml.streaming.scorer import ScorerHandler, ServingModel
from streamml.streaming.worker import Worker

WEIGHTS = np.linspace(-0.5, 0.5, spec.N_FEATURES)


def row_model(matrix: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.tanh(matrix / 1000.0) @ WEIGHTS)))


def main() -> None:
    requests, predictions, dlq, group = sys.argv[1:5]
    settings = Settings()
    handler = ScorerHandler(
        RedisFeatureStore(redis_client(settings.redis)),
        lambda: ServingModel("test", "1", row_model),
        predictions_topic=predictions,
        dlq_topic=dlq,
    )
    worker = Worker(
        Consumer(consumer_config(settings.kafka, group)),
        Producer(producer_config(settings.kafka)),
        [requests],
        handler,
        batch_size=200,
    )
    worker.install_signal_handlers()
    worker.run()


if __name__ == "__main__":
    main()
