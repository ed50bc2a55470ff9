"""The errors streamml raises; third-party errors are wrapped in these at the adapter."""

from __future__ import annotations


class StreamMLError(Exception):
    """Base of every streamml error; its message is meant for a person."""


class ConfigError(StreamMLError):
    """Settings or the environment are wrong (bad value, missing prerequisite, port taken)."""


class PoisonMessageError(StreamMLError):
    """A message can never be processed (bad JSON, wrong fields, out of range, unscorable); it goes to the DLQ.

    ``reason`` is its short label (one of ``streaming.messages.POISON_REASONS``).
    """

    def __init__(self, message: str, reason: str = "invalid_fields") -> None:
        super().__init__(message)
        self.reason = reason


class TransientError(StreamMLError):
    """An infrastructure fault (broker, Redis, MLflow unreachable) that a retry may fix."""


class UpstreamError(StreamMLError):
    """A backing service refused a call; the message quotes its answer, which the API keeps for its log."""


class ModelUnavailableError(StreamMLError):
    """No model can be loaded to serve (none registered, or the registry is unreachable)."""


class DataValidationError(StreamMLError):
    """Input data breaks its schema; the message names the file, the row and the problem."""


class NotFoundError(StreamMLError):
    """What was asked for does not exist (a DAG, a run, a model version)."""
