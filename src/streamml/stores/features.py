"""The online feature store: versioned packed blobs in Redis, switched atomically by ``feat:current``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import cast

import redis

from streamml import names
from streamml.config import RedisSettings
from streamml.errors import TransientError

logger = logging.getLogger(__name__)

OLD_VERSION_TTL_SECONDS = 24 * 3600


def redis_client(settings: RedisSettings) -> redis.Redis:
    return redis.Redis.from_url(settings.url, socket_timeout=10, socket_connect_timeout=5)


class RedisFeatureStore:
    """Feature blobs per version: ``feat:v{n}:user:{id}``, ``feat:v{n}:movie:{id}``, ``feat:v{n}:globals``."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def write(self, items: Iterable[tuple[str, bytes]], batch: int = 10_000) -> int:
        """Write key/blob pairs in MSET batches; return how many were written."""
        n = 0
        chunk: dict[str, bytes] = {}
        try:
            for key, blob in items:
                chunk[key] = blob
                if len(chunk) >= batch:
                    self.client.mset(chunk)
                    n += len(chunk)
                    chunk = {}
            if chunk:
                self.client.mset(chunk)
                n += len(chunk)
        except redis.RedisError as exc:
            raise TransientError(f"Redis write failed after {n} keys: {exc}") from exc
        return n

    def activate(self, version: int) -> int | None:
        """Point ``feat:current`` at ``version`` atomically; older versions expire. Return the previous version."""
        try:
            previous = self.client.getset(names.FEATURE_VERSION_CURRENT, str(version))
        except redis.RedisError as exc:
            raise TransientError(f"Redis switch of {names.FEATURE_VERSION_CURRENT} failed: {exc}") from exc
        old = int(previous) if previous is not None else None
        self.expire_versions(keep=version)
        return old

    def current_version(self) -> int | None:
        try:
            value = self.client.get(names.FEATURE_VERSION_CURRENT)
        except redis.RedisError as exc:
            raise TransientError(f"Redis read of {names.FEATURE_VERSION_CURRENT} failed: {exc}") from exc
        return int(value) if value is not None else None

    def expire_versions(self, keep: int, ttl: int = OLD_VERSION_TTL_SECONDS) -> int:
        """Give every key of every other version a TTL (readers still on it finish; then it is gone)."""
        n = 0
        pipe = self.client.pipeline(transaction=False)
        for key in self.client.scan_iter(match="feat:v*", count=10_000):
            text = key.decode()
            if not text.startswith(f"feat:v{keep}:"):
                pipe.expire(key, ttl, nx=True)
                n += 1
        pipe.execute()
        return n

    def write_predictions(self, items: Sequence[tuple[str, bytes]], ttl_seconds: int) -> None:
        """SET each result with a TTL in one pipelined round trip (a replayed batch overwrites the same keys)."""
        pipe = self.client.pipeline(transaction=False)
        for key, value in items:
            pipe.set(key, value, ex=ttl_seconds)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise TransientError(f"Redis write of {len(items)} prediction(s) failed: {exc}") from exc

    def get_many(self, version: int, user_ids: Sequence[int], movie_ids: Sequence[int]) -> list[bytes | None]:
        """Users' then movies' blobs then the globals blob, in one round trip."""
        keys = [names.user_features_key(version, u) for u in user_ids]
        keys += [names.movie_features_key(version, m) for m in movie_ids]
        keys.append(names.globals_features_key(version))
        try:
            return cast(list[bytes | None], self.client.mget(keys))
        except redis.RedisError as exc:
            raise TransientError(f"Redis read failed: {exc}") from exc
