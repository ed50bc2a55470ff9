"""The whole stack: the platform's own scorer (under supervisord) answers fresh requests, equal to the offline
computation, and routes malformed events to the DLQ.

Runs after tests/integration, whose DAG test trains the champion."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from streamml.config import Settings
from streamml.verification.streaming import run

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.kafka, pytest.mark.redis, pytest.mark.mlflow]


def test_verify_streaming_passes(settings: Settings, require: Callable[[str], None]) -> None:
    for service in ("kafka", "redis", "mlflow", "minio"):
        require(service)
    checks = run(settings, n=100, timeout=120)
    failed = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
    assert not failed, failed
    assert {c.name for c in checks} >= {
        "every request predicted on predictions.v1",
        "every prediction visible in Redis",
        "malformed and out-of-range events in the DLQ with their reason",
        "scores equal the registered model (mlflow.pyfunc) on the served features",
        "served features equal the feature definition on the online state",
    }
