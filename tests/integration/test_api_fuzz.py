"""Property-based fuzzing of the running API from its OpenAPI schema (schemathesis): no input gets a 5xx.

Runs against the supervised `streamml api` program of the stack. Mutating endpoints are fuzzed without the API key
(they must answer 401 or a 4xx, never 5xx) so the fuzzer cannot promote models or trigger DAGs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from streamml.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_no_generated_input_gets_a_server_error(
    settings: Settings, require: Callable[[str], None], training_run: dict[str, Any]
) -> None:
    require("api")
    schema = schemathesis.openapi.from_url(f"{settings.api.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: Any) -> None:
            response = case.call(timeout=60)
            if response.status_code >= 500 or (response.status_code >= 400 and "detail" not in response.json()):
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

        fuzz()
    assert not failures, "\n".join(failures[:20])
