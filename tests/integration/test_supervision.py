"""The supervisor restarts a server killed with SIGKILL, and it is healthy again within 60 s."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from streamml.config import Settings
from streamml.runtime import health
from streamml.runtime.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize(
    "program", [pytest.param("redis", marks=pytest.mark.redis), pytest.param("kafka", marks=pytest.mark.kafka)]
)
def test_kill_9_is_restarted_and_healthy_within_60s(
    settings: Settings, require: Callable[[str], None], program: str
) -> None:
    require(program)
    stack = LocalStack(settings)
    before = stack.supervisor.processes()[program]["pid"]
    os.kill(before, signal.SIGKILL)
    deadline = time.monotonic() + 60
    health.wait_for([program], settings, timeout=60)
    while (after := stack.supervisor.processes()[program])["statename"] != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)  # supervisord calls it RUNNING after startsecs
    assert after["statename"] == "RUNNING"
    assert after["pid"] != before
