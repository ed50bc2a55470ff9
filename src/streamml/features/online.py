"""The online state as a person reads it: what the scorer reads for a user, a movie or the globals, decoded."""

from __future__ import annotations

import dataclasses
from typing import Any

from streamml.errors import NotFoundError
from streamml.features import packing
from streamml.stores.features import RedisFeatureStore

KINDS = ("user", "movie", "globals")


def online_state(
    store: RedisFeatureStore, kind: str, entity_id: int | None = None, feature_version: int | None = None
) -> dict[str, Any]:
    """``{"feature_version", "kind", "id", <the state's fields>}`` of a user or movie (``entity_id``) or of the
    globals, in ``feature_version`` (default: the active one), as the feature updater left it."""
    unpack = {"user": packing.unpack_user, "movie": packing.unpack_movie, "globals": packing.unpack_globals}.get(kind)
    if unpack is None or (kind == "globals") != (entity_id is None):
        raise ValueError("ask for a user ID, a movie ID or the globals")
    version = store.active_version(feature_version)
    wanted = [] if entity_id is None else [entity_id]
    blob = store.get_many(version, wanted if kind == "user" else [], wanted if kind == "movie" else [])[0]
    if blob is None:
        raise NotFoundError(f"{kind} {entity_id} has no online state in feature version {version}")
    state = dataclasses.asdict(unpack(blob))  # type: ignore[call-overload]
    return {"feature_version": version, "kind": kind, "id": entity_id, **state}
