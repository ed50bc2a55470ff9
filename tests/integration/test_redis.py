from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import redis

from streamml.config import Settings
from streamml.errors import TransientError
from streamml.stores.features import RedisFeatureStore

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


def test_prediction_writes_are_pre_encoded_sets_with_a_ttl_and_an_error_poisons_no_connection(
    settings: Settings, require: Callable[[str], None], uid: str
) -> None:
    """``write_predictions`` as the scorer's account: every value and its TTL land. A batch holding keys that
    account may not write (NOPERM) raises TransientError after Redis ran the others, and the next batches on the same
    client read their own replies, not the failed batch's."""
    require("redis")
    admin = redis.Redis.from_url(settings.redis.url, socket_timeout=5)
    store = RedisFeatureStore(redis.Redis.from_url(settings.redis.as_account("scorer").url, socket_timeout=5))
    keys = [f"pred:{uid}-{i}" for i in range(3)]
    try:
        values = [b"\x00\r\n$3\r\nSET", "é".encode() * 100, b""]  # RESP framing and non-ASCII bytes in the values
        store.write_predictions([(key, value) for key, value in zip(keys, values, strict=True)], 60)
        assert admin.mget(keys) == values
        assert all(0 < admin.ttl(key) <= 60 for key in keys)

        forbidden = f"feat:{uid}"
        batch = [(forbidden, b"x"), (keys[0], b"again"), (forbidden, b"x"), (keys[1], b"again")]
        with pytest.raises(TransientError, match=r"no permissions.*\(2 of 4\)"):
            store.write_predictions(batch, 60)
        assert admin.mget(keys[:2]) == [b"again", b"again"] and admin.exists(forbidden) == 0
        # Had the failed batch's later replies been left unread, one of these would read its second error.
        for _ in range(3):
            store.write_predictions([(keys[2], b"after")], 30)
        assert admin.get(keys[2]) == b"after" and 0 < admin.ttl(keys[2]) <= 30
        store.write_predictions([], 60)
    finally:
        admin.delete(*keys)
        admin.close()
    with socket.socket() as probe:  # a port nothing listens on: Redis is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = RedisFeatureStore(redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2))
    with pytest.raises(TransientError, match="write of 1 prediction"):
        down.write_predictions([(keys[0], b"x")], 60)
