from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from streamml.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def test_set_get_with_ttl_and_aof_on(settings: Settings, require: Callable[[str], None], uid: str) -> None:
    require("redis")
    client = redis.Redis.from_url(settings.redis.url)
    key = f"test:{uid}"
    try:
        assert client.set(key, b"\x00\x01payload", ex=60)
        assert client.get(key) == b"\x00\x01payload"
        assert 0 < client.ttl(key) <= 60
        assert client.config_get("appendonly")["appendonly"] == "yes"
    finally:
        client.delete(key)
        client.close()
