"""The one factory of Redis clients (the feature and metrics stores, health checks and the dashboard use it)."""

from __future__ import annotations

import redis

from streamml.config import RedisSettings


def redis_client(settings: RedisSettings, timeout: float = 10.0) -> redis.Redis:
    """A client of ``settings.url``; a command waits at most ``timeout`` seconds, a connection half of it (pages
    and probes pass a few seconds, so a down Redis is reported instead of hanging)."""
    return redis.Redis.from_url(settings.url, socket_timeout=timeout, socket_connect_timeout=timeout / 2)
