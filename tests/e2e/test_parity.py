"""Per-request parity on the running platform: a replay of the stream period's first requests; every online prediction
equals the offline point-in-time features and score of its rating row, or a timing artefact explains the difference
(a rating applied late or early, which the counts in the served vector show); there is no real mismatch. How many are
identical depends on the pace and the machine (docs/models.md has the measured shares), so it is not asserted.

Runs after tests/integration, whose DAG test trains the champion; it resets the online features of the active
version to the batch snapshot (as `streamml parity` does)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from streamml.config import Settings
from streamml.verification.parity import replay_and_compare

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.kafka, pytest.mark.redis, pytest.mark.mlflow]


def test_online_predictions_equal_the_offline_rows(settings: Settings, require: Callable[[str], None]) -> None:
    for service in ("kafka", "redis", "mlflow", "minio"):
        require(service)
    report, predictions = replay_and_compare(settings, rate=10.0, feedback_delay=0.05, limit=300, timeout=120)
    assert len(predictions) == 300 and report.compared == 300 and report.unmatched == 0
    assert report.mismatch == 0, report.examples
    assert report.identical + report.stale + report.ahead == report.compared
    assert report.identical > 0, report
