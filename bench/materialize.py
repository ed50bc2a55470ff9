"""Redis materialization throughput of a synthetic online snapshot, end to end through the platform's own
:func:`streamml.features.materialize.materialize`.

States are drawn once (not timed) and written as the feature job writes a version's snapshot parts: parquet under
``s3://features/v{N}/users/`` and ``movies/`` plus its manifest, in a scratch version of MinIO's features bucket
(deleted at the end). Timed, repeated: ``materialize()`` (read the parts, pack them column by column into the fixed
layouts, one MULTI/EXEC of MSET batches, activate), beside the same parts through an object per row (the shape of the
materializer before session 17: row dicts, a state object, one pack per state, the same load), the steps of the
platform path alone, and the naive baseline, one SET round trip per key, on a sample. Redis database
``STREAMML_REDIS__DB`` is flushed before and after; database 0 (the platform's) is refused.

    STREAMML_REDIS__DB=15 python -m bench.materialize --users 1000000 --movies 50000
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import redis

from bench.harness import Row, console, print_table, stopwatch
from streamml import names
from streamml.config import Settings
from streamml.features import packing, snapshot_rows, spec
from streamml.stores.features import RedisFeatureStore
from streamml.stores.redis_client import redis_client

TARGET_KEYS_PER_SECOND = 200_000


def synthesize_users(rng: np.random.Generator, n: int) -> list[spec.UserState]:
    """Users with a long-tailed rating count spread over a few favourite genres (about 2 genres per movie)."""
    count = np.minimum(1 + rng.lognormal(3.0, 1.2, n).astype(np.int64), 5_000)
    mean = np.clip(np.round(rng.normal(3.6, 0.45, n) * 2) / 2, 0.5, 5.0)
    total = count * mean
    total_sq = count * (mean * mean + 0.75)
    likes = rng.binomial(count, np.clip((mean - 2.5) / 2.5, 0.02, 0.98))
    last_ts = rng.integers(946_684_800, 1_577_836_800, n)
    taste = rng.dirichlet(np.full(spec.N_GENRES, 0.3), n)
    genre_count = rng.multinomial(2 * count, taste)
    genre_total = np.round(genre_count * mean[:, None] * 2) / 2
    columns = zip(
        count.tolist(),
        total.tolist(),
        total_sq.tolist(),
        likes.tolist(),
        last_ts.tolist(),
        genre_count.tolist(),
        genre_total.tolist(),
        strict=True,
    )
    return [spec.UserState(c, t, sq, lk, ts, gc, gt) for c, t, sq, lk, ts, gc, gt in columns]


def synthesize_movies(rng: np.random.Generator, n: int) -> list[spec.MovieState]:
    """Movies with 1-3 genres, a release year (5% without) and long-tailed popularity (some never rated)."""
    n_genres = rng.integers(1, 4, n)
    year = rng.integers(1920, 2021, n)
    has_year = rng.random(n) >= 0.05
    count = np.where(rng.random(n) < 0.2, 0, rng.zipf(1.6, n).clip(max=100_000))
    mean = np.clip(np.round(rng.normal(3.4, 0.5, n) * 2) / 2, 0.5, 5.0)
    movies = []
    for i in range(n):
        genres = tuple(sorted(rng.choice(spec.N_GENRES - 1, int(n_genres[i]), replace=False).tolist()))
        c = int(count[i])
        m = float(mean[i])
        movies.append(
            spec.MovieState(
                genres=genres,
                year=int(year[i]) if has_year[i] else None,
                count=c,
                total=c * m,
                total_sq=c * (m * m + 0.75),
                likes=int(c * max(0.0, (m - 2.5) / 2.5)),
            )
        )
    return movies


SCRATCH_VERSION = 990_001
"""The feature version the bench writes to MinIO (its prefix is deleted at the end) and to Redis."""
_ARROW_TYPES = {"long": "int64", "double": "float64", "array<long>": "list<int64>", "array<double>": "list<float64>"}


def snapshot_tables(users: list[spec.UserState], movies: list[spec.MovieState]) -> tuple[Any, Any]:
    """The states as a feature version's snapshot parts (``snapshot_rows.USER_SNAPSHOT_COLUMNS``, ``MOVIE_...``)."""
    import pyarrow as pa

    def arrow(kind: str) -> Any:
        name = _ARROW_TYPES[kind]
        return pa.list_(pa.type_for_alias(name[5:-1])) if name.startswith("list") else pa.type_for_alias(name)

    user_columns = {"userId": pa.array(np.arange(1, len(users) + 1))}
    for name, kind in snapshot_rows.USER_STATE_SCHEMA.items():
        user_columns[name] = pa.array([getattr(u, name) for u in users], arrow(kind))
    movie_columns = {
        "movieId": pa.array(np.arange(1, len(movies) + 1)),
        "genres": pa.array([list(m.genres) for m in movies], pa.list_(pa.int32())),
        "year": pa.array([m.year for m in movies], pa.int32()),
    }
    for name in snapshot_rows.MOVIE_SNAPSHOT_COLUMNS[3:]:
        kind = pa.int64() if name in ("count", "likes", "first_ts") else pa.float64()
        movie_columns[name] = pa.array([getattr(m, name) for m in movies], kind)
    return pa.table(user_columns), pa.table(movie_columns)


def write_version(settings: Settings, version: int, users: Any, movies: Any, globals_state: spec.GlobalState) -> None:
    """The parts and the manifest of a feature version, as the feature job leaves them in MinIO."""
    import pyarrow.parquet as pq

    from streamml.features.batch import manifest_key
    from streamml.stores.objects import ObjectStore, s3_filesystem

    fs = s3_filesystem(settings.minio)
    for part, table in (("users", users), ("movies", movies)):
        pq.write_table(table, f"{names.BUCKET_FEATURES}/v{version}/{part}/part-00000.parquet", filesystem=fs)
    manifest = {
        "version": version,
        "globals": {"count": globals_state.count, "total": globals_state.total, "likes": globals_state.likes},
        "rows": {"users": users.num_rows, "movies": movies.num_rows},
    }
    ObjectStore(settings.minio, names.BUCKET_FEATURES).put_json(manifest_key(version), manifest)


def object_per_row(settings: Settings, version: int, store: RedisFeatureStore) -> int:
    """The materializer before session 17: every part row as a dict, then a state object, then one pack per state;
    the same load and activate."""
    from streamml.features.batch import read_manifest, read_part

    manifest = read_manifest(settings, version)

    def items() -> Iterator[tuple[str, bytes]]:
        for part, key, id_column, state_of, pack in (
            ("users", names.user_features_key, "userId", snapshot_rows.user_state_from_row, packing.pack_user),
            ("movies", names.movie_features_key, "movieId", snapshot_rows.movie_state_from_row, packing.pack_movie),
        ):
            for batch in read_part(settings, version, part).to_batches(max_chunksize=50_000):
                for row in batch.to_pylist():
                    yield key(version, int(row[id_column])), pack(state_of(row))
        yield (
            names.globals_features_key(version),
            packing.pack_globals(snapshot_rows.globals_from_row(manifest["globals"])),
        )

    written = store.load(version, items())
    store.activate(version)
    return written


def naive_write(client: redis.Redis, items: Iterator[tuple[str, bytes]]) -> int:
    """The baseline: one SET (one network round trip) per key."""
    n = 0
    for key, blob in items:
        client.set(key, blob)
        n += 1
    return n


def _flush(client: redis.Redis, attempts: int = 10) -> None:
    """FLUSHDB of the benchmark's database, waiting out a Redis restart (the supervisor brings it back)."""
    for attempt in range(attempts):
        try:
            client.flushdb()
            return
        except redis.ConnectionError:
            if attempt == attempts - 1:
                raise
            time.sleep(3)


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def main() -> int:
    parser = argparse.ArgumentParser(description="Redis materialization throughput (keys/s) vs a one-SET baseline.")
    parser.add_argument("--users", type=int, default=1_000_000, help="users in the synthetic snapshot")
    parser.add_argument("--movies", type=int, default=50_000, help="movies in the synthetic snapshot")
    parser.add_argument("--baseline-keys", type=int, default=50_000, help="user keys written by the one-SET baseline")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every phase; the table shows the median")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic states")
    args = parser.parse_args()
    if min(args.users, args.movies, args.baseline_keys, args.repeats) < 1:
        parser.error("every count must be positive")
    from streamml.features.batch import read_part
    from streamml.features.materialize import LOAD_TIMEOUT_SECONDS, materialize, snapshot_blobs
    from streamml.stores.objects import ObjectStore

    settings = Settings()
    if settings.redis.db == 0:
        console.print("[red]refusing to run on Redis db 0 (the platform's); set STREAMML_REDIS__DB=15[/red]")
        return 2
    client = redis_client(settings.redis, timeout=LOAD_TIMEOUT_SECONDS)
    store = RedisFeatureStore(client)
    version = SCRATCH_VERSION
    n_keys = args.users + args.movies + 1
    n_base = min(args.baseline_keys, args.users)
    console.print(
        f"redis {client.info('server')['redis_version']} at {settings.redis.url}, redis-py {redis.__version__}, "
        f"python {platform.python_version()}; {n_keys:,} keys (baseline {n_base:,}); scratch feature version {version}"
    )

    rng = np.random.default_rng(args.seed)
    with console.status("synthesizing states and writing them as a feature version to MinIO (not timed)"):
        users = synthesize_users(rng, args.users)
        movies = synthesize_movies(rng, args.movies)
        globals_state = spec.GlobalState(
            count=sum(u.count for u in users), total=sum(u.total for u in users), likes=sum(u.likes for u in users)
        )
        user_table, movie_table = snapshot_tables(users, movies)
        write_version(settings, version, user_table, movie_table, globals_state)

    platform_e2e = Row("platform: materialize() (read parts, pack columns, load, activate)", n_keys)
    rows_e2e = Row("before: the same, an object per row (dicts, states, one pack each)", n_keys)
    read = Row("step: read the parts from MinIO", n_keys)
    pack = Row("step: pack columns into the layouts", n_keys)
    load = Row("step: load (MULTI/EXEC of MSET batches, pre-packed)", n_keys)
    activate = Row("step: activate (GETSET + SCAN of all keys)", n_keys + 1)
    base_write = Row("baseline: one SET per key (pre-packed)", n_base)
    client.flushdb()
    try:
        for run in range(1, args.repeats + 1):
            console.print(f"run {run}/{args.repeats}")
            for row, call in ((platform_e2e, lambda: materialize(settings, version)["keys"]),
                              (rows_e2e, lambda: object_per_row(settings, version, store))):  # fmt: skip
                with stopwatch() as lap:
                    written = call()
                row.seconds.append(lap.seconds)
                assert written == n_keys and client.dbsize() == n_keys + 1, (written, client.dbsize())
                probe = int(rng.integers(1, args.users + 1))
                back = store.get_many(version, [probe], [1])
                assert packing.unpack_user(back[0]) == users[probe - 1]
                assert packing.unpack_movie(back[1]) == movies[0]
                assert packing.unpack_globals(back[2]) == globals_state
                assert store.current_version() == version
                redis_bytes = _used_memory(client)
                client.flushdb()

            with stopwatch() as lap:
                tables = {part: read_part(settings, version, part) for part in ("users", "movies")}
            read.seconds.append(lap.seconds)
            with stopwatch() as lap:
                packed = [
                    (key(version, entity), blob)
                    for part, key in (("users", names.user_features_key), ("movies", names.movie_features_key))
                    for entity, blob in snapshot_blobs(tables[part], part)
                ]
            pack.seconds.append(lap.seconds)
            packed.append((names.globals_features_key(version), packing.pack_globals(globals_state)))
            with stopwatch() as lap:
                store.load(version, iter(packed))
            load.seconds.append(lap.seconds)
            with stopwatch() as lap:
                store.activate(version)
            activate.seconds.append(lap.seconds)
            blob_bytes = sum(len(blob) for _, blob in packed)
            client.flushdb()

            with stopwatch() as lap:
                naive_write(client, iter(packed[:n_base]))
            base_write.seconds.append(lap.seconds)
            del packed, tables
            client.flushdb()
    finally:
        _flush(client)
        ObjectStore(settings.minio, names.BUCKET_FEATURES).delete_prefix(f"v{version}/")

    print_table(
        f"Redis materialization (median of {args.repeats})",
        [platform_e2e, rows_e2e, read, pack, load, activate, base_write],
    )
    console.print(
        f"platform / object per row: {platform_e2e.rate / rows_e2e.rate:.2f}x; platform / one SET per key: "
        f"{platform_e2e.rate / base_write.rate:.1f}x"
    )
    console.print(
        f"blobs: {blob_bytes / n_keys:.0f} B/key on average; Redis used_memory after a materialize "
        f"{redis_bytes / 2**20:,.0f} MiB ({redis_bytes / n_keys:.0f} B/key)"
    )
    ok = platform_e2e.rate >= TARGET_KEYS_PER_SECOND
    console.print(
        f"target >= {TARGET_KEYS_PER_SECOND:,} keys/s end to end through materialize(): "
        + ("[green]met[/green]" if ok else "[red]NOT met[/red]")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
