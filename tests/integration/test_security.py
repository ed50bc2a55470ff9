"""Closed by default, on the running stack: what an unauthenticated client gets, where the secrets are, and where
they are not (command lines, world-readable files)."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from streamml.config import Settings
from streamml.paths import StackPaths, repo_root

pytestmark = pytest.mark.integration


def test_redis_refuses_a_client_without_the_password(settings: Settings, require: Callable[[str], None]) -> None:
    require("redis")
    anonymous = redis.Redis(host=settings.redis.host, port=settings.redis.port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    wrong = redis.Redis(host=settings.redis.host, port=settings.redis.port, password="guess", socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    assert redis.Redis.from_url(settings.redis.url, socket_timeout=5).ping()


def test_no_secret_is_on_any_command_line(settings: Settings, require: Callable[[str], None]) -> None:
    """What `ps` shows every user of the machine: each running process's arguments, the stack's included."""
    for service in ("kafka", "redis", "minio", "mlflow", "airflow"):
        require(service)
    secrets = {name: value for name, value in settings.secrets().items() if len(value) >= 8}
    leaks = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        leaks += [f"{name} in pid {cmdline.parent.name}" for name, value in secrets.items() if value in args]
    assert not leaks, leaks


def test_env_and_state_are_readable_only_by_their_owner(settings: Settings, require: Callable[[str], None]) -> None:
    require("redis")
    paths = StackPaths.from_settings(settings)
    env = repo_root() / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.state.stat().st_mode) == 0o700
    for secret_file in (paths.supervisor_conf, paths.airflow_home / "passwords.json", paths.state / "redis/redis.conf"):
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600, secret_file
