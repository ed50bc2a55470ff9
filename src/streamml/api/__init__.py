"""The FastAPI service: predictions through the scorer's code path, the registry, runs, datasets, pipelines."""

from streamml.api.app import create_app

__all__ = ["create_app"]
