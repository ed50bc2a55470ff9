"""Shared fixtures. Service fixtures connect to the running local stack; a service that does not answer fails the
test, never skips it: ./run.sh test starts the stack first."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable

import pytest

from streamml.config import Settings
from streamml.runtime import health

# Spark workers must use this interpreter, and bind loopback only.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def require(settings: Settings) -> Callable[[str], None]:
    def _require(service: str) -> None:
        result = health.check(service, settings, timeout=10.0)
        if not result.ok:
            pytest.fail(f"{service} is not reachable ({result.detail}); start the stack with ./run.sh up")

    return _require


@pytest.fixture
def uid() -> str:
    """A per-test suffix for topics, keys and prefixes, so tests never see each other's data."""
    return uuid.uuid4().hex[:10]
