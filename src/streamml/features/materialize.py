"""Load a feature version's online snapshot from MinIO into Redis, then switch ``feat:current`` to it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from streamml import names
from streamml.config import Settings
from streamml.errors import DataValidationError
from streamml.features import packing, snapshot_rows
from streamml.features.batch import read_manifest, read_part
from streamml.stores.features import RedisFeatureStore
from streamml.stores.redis_client import redis_client

logger = logging.getLogger(__name__)


BATCH_ROWS = 50_000
LOAD_TIMEOUT_SECONDS = 300.0
"""How long the one MULTI/EXEC of a version may take: a million users are about 1 GB of records, whose load took
13 s in bench.materialize (Redis reading them off the socket), past the 10 s a command of the serving path waits."""
_ABSENT = {"last_ts": -1, "first_ts": -1, "year": -1, "last_rating": float("nan")}
"""The layouts' encoding of a null snapshot value (every other null is a movie without ratings: 0)."""


def _numpy(column: Any, name: str) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.fill_null(column, _ABSENT.get(name, 0)).to_numpy(zero_copy_only=False)


def _columns(batch: Any, layout: np.dtype, first_row: int) -> dict[str, np.ndarray]:
    """A snapshot batch's columns in ``layout``'s encoding (list columns as (rows, width) arrays); its first row is
    row ``first_row`` of the part."""
    import pyarrow.compute as pc

    columns: dict[str, np.ndarray] = {}
    for name in packing.fields_of(layout):
        column = batch.column(name)
        if name == "genres":
            parents = pc.list_parent_indices(column).to_numpy()
            genres = pc.list_flatten(column).to_numpy(zero_copy_only=False)
            columns[name] = packing.genre_masks(len(batch), parents, genres, first_row)
        elif layout[name].shape:
            width = layout[name].shape[0]
            lengths = pc.fill_null(pc.list_value_length(column), -1).to_numpy()
            if np.any(lengths != width):
                row = int(np.flatnonzero(lengths != width)[0])
                held = max(lengths[row], 0)
                raise DataValidationError(f"row {first_row + row}: {name} holds {held} values, not {width}")
            columns[name] = _numpy(pc.list_flatten(column), name).reshape(len(batch), width)
        else:
            columns[name] = _numpy(column, name)
    return columns


def snapshot_blobs(table: Any, part: str, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, bytes]]:
    """(id, blob) of every state of a snapshot part (``users`` or ``movies``, a pyarrow Table), packed column by
    column, batch by batch; a row out of bounds is refused naming the part and the row."""
    layout, id_column = (packing.USER_LAYOUT, "userId") if part == "users" else (packing.MOVIE_LAYOUT, "movieId")
    start = 0
    for batch in table.to_batches(max_chunksize=batch_rows):
        try:
            blobs = packing.pack_columns(layout, _columns(batch, layout, start), part[:-1], start)
        except DataValidationError as exc:
            raise DataValidationError(f"part {part}, {exc}") from None
        yield from zip(batch.column(id_column).to_pylist(), blobs, strict=True)
        start += len(batch)


def materialize(settings: Settings, version: int, on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Replace ``version`` in Redis with its snapshot (every user and movie blob and the globals, atomically, its
    applied-ratings set emptied), then activate it; return counts."""
    manifest = read_manifest(settings, version)
    store = RedisFeatureStore(redis_client(settings.redis, timeout=LOAD_TIMEOUT_SECONDS))

    def blobs() -> Iterator[tuple[str, bytes]]:
        for part, key in (("users", names.user_features_key), ("movies", names.movie_features_key)):
            try:
                for n, (entity, blob) in enumerate(snapshot_blobs(read_part(settings, version, part), part), 1):
                    yield key(version, entity), blob
                    if on_progress and part == "users" and n % BATCH_ROWS == 0:
                        on_progress(n)
            except DataValidationError as exc:
                raise DataValidationError(f"feature version {version}: {exc}") from None
        globals_state = snapshot_rows.globals_from_row(manifest["globals"])
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
