"""Fixtures that connect to the running local stack. A service that does not answer fails the test, never skips it:
./run.sh test starts the stack first."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from streamml.config import Settings
from streamml.runtime import health


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
