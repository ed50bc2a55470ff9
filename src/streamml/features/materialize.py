"""Load a feature version's online snapshot from MinIO into Redis, then switch ``feat:current`` to it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from streamml import names
from streamml.config import Settings
from streamml.features import packing
from streamml.features.batch import read_manifest, read_part
from streamml.stores.features import RedisFeatureStore
from streamml.stores.redis_client import redis_client

logger = logging.getLogger(__name__)


def _rows(settings: Settings, version: int, part: str) -> Iterator[dict[str, Any]]:
    table = read_part(settings, version, part)
    for batch in table.to_batches(max_chunksize=50_000):
        yield from batch.to_pylist()


def materialize(settings: Settings, version: int, on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Replace ``version`` in Redis with its snapshot (every user and movie blob and the globals, atomically, its
    applied-ratings set emptied), then activate it; return counts."""
    manifest = read_manifest(settings, version)
    store = RedisFeatureStore(redis_client(settings.redis))

    def blobs() -> Iterator[tuple[str, bytes]]:
        n = 0
        for row in _rows(settings, version, "users"):
            yield (
                names.user_features_key(version, int(row["userId"])),
                packing.pack_user(packing.user_state_from_row(row)),
            )
            n += 1
            if on_progress and n % 50_000 == 0:
                on_progress(n)
        for row in _rows(settings, version, "movies"):
            yield (
                names.movie_features_key(version, int(row["movieId"])),
                packing.pack_movie(packing.movie_state_from_row(row)),
            )
        globals_state = packing.globals_from_row(manifest["globals"])
        yield names.globals_features_key(version), packing.pack_globals(globals_state)

    written = store.load(version, blobs())
    previous = store.activate(version)
    result = {
        "version": version,
        "keys": written,
        "users": manifest["rows"]["users"],
        "movies": manifest["rows"]["movies"],
        "previous": previous,
    }
    logger.info("materialized %s", result)
    return result
