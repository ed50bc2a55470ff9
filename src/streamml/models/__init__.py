"""Models: train on the history, evaluate honestly on the stream, register and promote in MLflow.

One module per stage: :mod:`.train` (typed config, estimators, the training run), :mod:`.evaluate` (metrics,
baselines, the streaming and frozen evaluation modes, artifacts), :mod:`.pyfunc` (the MLflow model and the scorer's
fast path), :mod:`.registry` (versions, aliases, the promotion gate, rollback) and :mod:`.events` (the
``model-events.v1`` message). Nothing is imported here, so importing the package stays cheap.
"""
