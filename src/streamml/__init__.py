"""streamml: a Kafka-based streaming MLOps platform (MovieLens worked use case)."""

__version__ = "0.1.0"
