"""The online feature store: versioned packed blobs in Redis, switched atomically by ``feat:current``, with the set
of rating ids applied to each version, and the scorer's results ``pred:{request_id}``. Every Redis command of the
features, applied ids and predictions is here; handlers call these methods."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis

from streamml import names
from streamml.errors import StreamMLError, TransientError

logger = logging.getLogger(__name__)

OLD_VERSION_TTL_SECONDS = 24 * 3600
APPLIED_LATENCY_WINDOW = 5000


@dataclass(frozen=True)
class FeatureUpdate:
    """What one batch of feedback writes: the touched states' blobs, the rating ids it applied, and how long each
    took from feedback to applied (ms)."""

    users: Mapping[int, bytes]
    movies: Mapping[int, bytes]
    globals_blob: bytes
    rating_ids: Sequence[str]
    applied_latency_ms: Sequence[float] = ()


# (applied flags of the rating ids, the users' then movies' blobs then the globals blob) -> the write, or None
UpdatePlan = Callable[[list[bool], list[bytes | None]], FeatureUpdate | None]


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

    def load(self, version: int, items: Iterable[tuple[str, bytes]], batch: int = 10_000) -> int:
        """Replace everything of ``version`` with ``items`` in one MULTI/EXEC: every blob, the removal of keys the
        snapshot does not hold (users and movies first seen in an earlier stream) and of the applied-ratings set and
        the replay mark. A reader (the scorer, the feature updater) sees the old version or the new one, never a
        mix, and the ratings of the stream can be applied again. Return how many blobs were written."""
        prefix = f"feat:v{version}:"
        written: set[bytes] = set()
        try:
            existing = set(self.client.scan_iter(match=prefix + "*", count=10_000))
            tx = self.client.pipeline(transaction=True)
            for chunk in _chunks(iter(items), batch):
                tx.mset(dict(chunk))
                written.update(key.encode() for key, _ in chunk)
            for stale in _chunks(iter(existing - written), batch):
                tx.unlink(*stale)
            tx.execute()
        except redis.RedisError as exc:
            raise TransientError(f"Redis load of feature version {version} failed: {exc}") from exc
        return len(written)

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
        if value is None:
            return None
        if not value.isdigit():  # not a message's fault: retried (and the process exits) until someone fixes it
            raise TransientError(
                f"{names.FEATURE_VERSION_CURRENT} holds {value[:40]!r}, not a version; run `streamml features "
                "materialize --version N`"
            )
        return int(value)

    def active_version(self, version: int | None = None) -> int:
        """``version`` when given, else the active one; raise naming the fix when no version is loaded yet."""
        version = version or self.current_version()
        if version is None:
            raise StreamMLError("no online feature version yet; run the movielens_training DAG first")
        return version

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
        """SET each result with a TTL in one round trip (a replayed batch overwrites the same keys). The commands are
        encoded here into one buffer: redis-py's pipeline spent 4.4-4.6 ms of CPU on 500 of them, this 0.6-1.0."""
        if not items:
            return
        ex = str(int(ttl_seconds)).encode()
        tail = b"\r\n$2\r\nEX\r\n$%d\r\n%s\r\n" % (len(ex), ex)
        commands = []
        for key, value in items:
            k = key.encode()
            commands.append(b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s%s" % (len(k), k, len(value), value, tail))
        self._send_packed(f"write of {len(items)} prediction(s)", b"".join(commands), len(items))

    def _send_packed(self, what: str, payload: bytes, replies: int) -> None:
        """Send pre-encoded commands on one pooled connection and read their ``replies`` replies; raise
        :class:`TransientError` on an error reply (after reading them all) or a connection fault. A connection that
        may still hold unread replies is closed, never handed out again."""
        pool = self.client.connection_pool
        try:
            connection = pool.get_connection()  # connects: a Redis that is down or restarting fails here
        except redis.RedisError as exc:
            raise TransientError(f"Redis {what} failed: {exc}") from exc
        errors: list[redis.ResponseError] = []
        try:
            connection.send_packed_command([payload], check_health=False)
            for _ in range(replies):
                try:
                    connection.read_response()
                except redis.ResponseError as exc:  # that command failed; its reply is read, the next ones follow
                    errors.append(exc)
        except redis.RedisError as exc:
            connection.disconnect()
            raise TransientError(f"Redis {what} failed: {exc}") from exc
        except BaseException:
            connection.disconnect()
            raise
        finally:
            pool.release(connection)
        if errors:
            raise TransientError(f"Redis {what} failed: {errors[0]} ({len(errors)} of {replies})") from errors[0]

    def read_predictions(self, request_ids: Sequence[str]) -> list[bytes | None]:
        """The stored ``pred:{id}`` of each request id (None where there is none, or it expired)."""
        keys = [names.prediction_key(r) for r in request_ids]
        return cast(list[bytes | None], self._call("read of predictions", self.client.mget, keys))

    def read_for_update(
        self, version: int, rating_ids: Sequence[str], user_ids: Sequence[int], movie_ids: Sequence[int]
    ) -> tuple[list[bool], list[bytes | None]]:
        """Whether each rating id is applied to ``version`` already, and the users' then movies' blobs then the
        globals blob (as :meth:`get_many`), in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.smismember(names.applied_ratings_key(version), list(rating_ids))
        pipe.mget(_state_keys(version, user_ids, movie_ids))
        applied, blobs = self._call("read for a feature update", pipe.execute)
        return [bool(a) for a in applied], cast(list[bytes | None], blobs)

    def update_atomically(
        self,
        version: int,
        rating_ids: Sequence[str],
        user_ids: Sequence[int],
        movie_ids: Sequence[int],
        plan: UpdatePlan,
        attempts: int = 100,
    ) -> int:
        """Read what :meth:`read_for_update` reads under WATCH, let ``plan`` turn it into a :class:`FeatureUpdate`
        and write that in one MULTI/EXEC (blobs, the rating ids into the applied set, feedback-to-applied
        latencies). If another writer changed any of those keys in between (a second updater on the shared movie
        and globals states, or a materialization), nothing is written and the read, the plan and the write run
        again on the new state, so no update is ever lost or applied twice. Return how many times it ran again."""
        keys = _state_keys(version, user_ids, movie_ids)
        applied_key = names.applied_ratings_key(version)
        for attempt in range(attempts):
            with self.client.pipeline(transaction=True) as tx:
                try:
                    tx.watch(applied_key, *keys)
                    applied = [bool(a) for a in tx.smismember(applied_key, list(rating_ids))]
                    update = plan(applied, cast(list[bytes | None], tx.mget(keys)))
                    if update is None:
                        return attempt
                    tx.multi()
                    tx.mset(
                        {
                            **{names.user_features_key(version, u): blob for u, blob in update.users.items()},
                            **{names.movie_features_key(version, m): blob for m, blob in update.movies.items()},
                            names.globals_features_key(version): update.globals_blob,
                        }
                    )
                    tx.sadd(applied_key, *update.rating_ids)
                    if update.applied_latency_ms:
                        tx.rpush(names.METRICS_APPLIED_LATENCY, *[f"{ms:.1f}" for ms in update.applied_latency_ms])
                        tx.ltrim(names.METRICS_APPLIED_LATENCY, -APPLIED_LATENCY_WINDOW, -1)
                    tx.execute()
                    return attempt
                except redis.WatchError:
                    logger.debug("feature update conflicted with another writer (attempt %d); reading again", attempt)
                except redis.RedisError as exc:
                    raise TransientError(f"Redis write of a feature update failed: {exc}") from exc
        raise TransientError(f"a feature update of {len(rating_ids)} rating(s) conflicted {attempts} times in a row")

    def applied_count(self, version: int) -> int:
        """How many ratings were applied to ``version`` since it was materialized."""
        return int(self._call("count of applied ratings", self.client.scard, names.applied_ratings_key(version)))

    def mark_replayed(self, version: int, info: Mapping[str, Any]) -> None:
        """Record that the whole stream period of ``version`` was replayed (``info``: when, how many, at what pace)."""
        self._call("replay mark", self.client.set, names.replayed_key(version), json.dumps(dict(info)))

    def replayed(self, version: int) -> dict[str, Any] | None:
        """The replay mark of ``version``, or None when its stream period was not fully replayed since it loaded."""
        raw = self._call("replay mark", self.client.get, names.replayed_key(version))
        return cast(dict[str, Any], json.loads(raw)) if raw is not None else None

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except redis.RedisError as exc:
            raise TransientError(f"Redis {what} failed: {exc}") from exc

    def get_many(self, version: int, user_ids: Sequence[int], movie_ids: Sequence[int]) -> list[bytes | None]:
        """Users' then movies' blobs then the globals blob, in one round trip."""
        keys = _state_keys(version, user_ids, movie_ids)
        return cast(list[bytes | None], self._call("read of feature states", self.client.mget, keys))


def _state_keys(version: int, user_ids: Sequence[int], movie_ids: Sequence[int]) -> list[str]:
    keys = [names.user_features_key(version, u) for u in user_ids]
    keys += [names.movie_features_key(version, m) for m in movie_ids]
    keys.append(names.globals_features_key(version))
    return keys


T = TypeVar("T")


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
