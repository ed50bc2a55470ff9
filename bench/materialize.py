"""Redis materialization throughput of a synthetic online snapshot, through the platform's own code path.

States are drawn once (not timed), then packed with :mod:`streamml.features.spec` and written with
:class:`streamml.stores.features.RedisFeatureStore` exactly as :func:`streamml.features.materialize.materialize`
does (pipelined MSET batches, then ``activate``). The baseline is the naive shape, one SET round trip per key, on a
sample. Redis database ``STREAMML_REDIS__DB`` is flushed before and after; database 0 (the platform's) is refused.

    STREAMML_REDIS__DB=15 python -m bench.materialize --users 1000000 --movies 50000
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import redis
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.harness import Row, console, print_table, stopwatch
from streamml import names
from streamml.config import Settings
from streamml.features import packing, spec
from streamml.stores.features import RedisFeatureStore
from streamml.stores.redis_client import redis_client

TARGET_KEYS_PER_SECOND = 200_000
PROGRESS_EVERY = 50_000
Blobs = list[tuple[str, bytes]]


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


def blobs(
    version: int,
    users: list[spec.UserState],
    movies: list[spec.MovieState],
    globals_state: spec.GlobalState,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[str, bytes]]:
    """The key/blob stream of a feature version, in the order and shape of the platform's materializer."""
    n = 0
    for user_id, user in enumerate(users, start=1):
        yield names.user_features_key(version, user_id), packing.pack_user(user)
        n += 1
        if on_progress and n % PROGRESS_EVERY == 0:
            on_progress(n)
    for movie_id, movie in enumerate(movies, start=1):
        yield names.movie_features_key(version, movie_id), packing.pack_movie(movie)
        n += 1
        if on_progress and n % PROGRESS_EVERY == 0:
            on_progress(n)
    yield names.globals_features_key(version), packing.pack_globals(globals_state)


def naive_write(client: redis.Redis, items: Iterator[tuple[str, bytes]]) -> int:
    """The baseline: one SET (one network round trip) per key."""
    n = 0
    for key, blob in items:
        client.set(key, blob)
        n += 1
    return n


@contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A transient progress bar; yields the ``on_progress(done)`` callback to hand to :func:`blobs`."""
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda done: progress.update(task, completed=done)


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


def _mset_server_seconds(client: redis.Redis) -> float:
    """Seconds Redis has spent executing MSET since its start (instance-wide ``INFO commandstats``)."""
    return int(client.info("commandstats").get("cmdstat_mset", {}).get("usec", 0)) / 1e6


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def main() -> int:
    parser = argparse.ArgumentParser(description="Redis materialization throughput (keys/s) vs a one-SET baseline.")
    parser.add_argument("--users", type=int, default=1_000_000, help="users in the synthetic snapshot")
    parser.add_argument("--movies", type=int, default=50_000, help="movies in the synthetic snapshot")
    parser.add_argument("--baseline-keys", type=int, default=50_000, help="user keys written by the one-SET baseline")
    parser.add_argument("--batch", type=int, default=10_000, help="MSET batch of the platform path")
    parser.add_argument("--version", type=int, default=1, help="feature version number of the keys")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every phase; the table shows the median")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic states")
    args = parser.parse_args()
    if min(args.users, args.movies, args.baseline_keys, args.batch, args.repeats) < 1:
        parser.error("every count must be positive")

    settings = Settings()
    if settings.redis.db == 0:
        console.print("[red]refusing to run on Redis db 0 (the platform's); set STREAMML_REDIS__DB=15[/red]")
        return 2
    client = redis_client(settings.redis)
    store = RedisFeatureStore(client)
    n_keys = args.users + args.movies + 1
    n_base = min(args.baseline_keys, args.users)
    console.print(
        f"redis {client.info('server')['redis_version']} at {settings.redis.url}, redis-py {redis.__version__}, "
        f"python {platform.python_version()}; {n_keys:,} keys (baseline {n_base:,}), MSET batch {args.batch:,}"
    )

    rng = np.random.default_rng(args.seed)
    with console.status("synthesizing states (not timed)"):
        users = synthesize_users(rng, args.users)
        movies = synthesize_movies(rng, args.movies)
        globals_state = spec.GlobalState(
            count=sum(u.count for u in users), total=sum(u.total for u in users), likes=sum(u.likes for u in users)
        )

    base_e2e = Row("baseline: pack + SET per key", n_base + 1)
    base_write = Row("baseline: SET per key only (pre-packed)", n_base + 1)
    platform_e2e = Row(f"platform: pack + MSET {args.batch:,}/batch", n_keys)
    pack = Row("breakdown: pack keys + blobs", n_keys)
    write = Row(f"breakdown: MSET {args.batch:,}/batch only (pre-packed)", n_keys)
    activate = Row("platform: activate (GETSET + SCAN of all keys)", n_keys + 1)
    base_users = users[:n_base]
    server_seconds: list[float] = []
    client.flushdb()
    try:
        for run in range(1, args.repeats + 1):
            console.print(f"run {run}/{args.repeats}")
            # Baseline: pack + one SET per key, then the same pre-packed keys again (write only).
            with stopwatch() as lap:
                written = naive_write(client, blobs(args.version, base_users, [], globals_state))
            assert written == base_e2e.count
            base_e2e.seconds.append(lap.seconds)
            packed = list(blobs(args.version, base_users, [], globals_state))
            client.flushdb()
            with stopwatch() as lap:
                naive_write(client, iter(packed))
            base_write.seconds.append(lap.seconds)
            client.flushdb()

            # Breakdown of the platform path: pack everything, then MSET the pre-packed blobs.
            with _progress("pack", n_keys) as on_progress, stopwatch() as lap:
                everything: Blobs = list(blobs(args.version, users, movies, globals_state, on_progress))
            pack.seconds.append(lap.seconds)
            blob_bytes = sum(len(blob) for _, blob in everything)
            memory_before = _used_memory(client)
            server_before = _mset_server_seconds(client)
            with stopwatch() as lap:
                written = store.write(iter(everything), batch=args.batch)
            assert written == n_keys
            write.seconds.append(lap.seconds)
            server_seconds.append(_mset_server_seconds(client) - server_before)
            redis_bytes = _used_memory(client) - memory_before
            del everything
            client.flushdb()

            # The platform path end to end: packing streamed into MSET batches, then activate.
            with _progress("pack + write", n_keys) as on_progress, stopwatch() as lap:
                written = store.write(blobs(args.version, users, movies, globals_state, on_progress), batch=args.batch)
            assert written == n_keys
            platform_e2e.seconds.append(lap.seconds)
            with stopwatch() as lap:
                store.activate(args.version)
            activate.seconds.append(lap.seconds)

            # The written data must be what the platform would read back.
            assert client.dbsize() == n_keys + 1, client.dbsize()  # + feat:current
            probe = int(rng.integers(1, args.users + 1))
            back = store.get_many(args.version, [probe], [1])
            assert packing.unpack_user(back[0]) == users[probe - 1]
            assert packing.unpack_movie(back[1]) == movies[0]
            assert packing.unpack_globals(back[2]) == globals_state
            assert store.current_version() == args.version
            client.flushdb()
    finally:
        _flush(client)

    print_table(
        f"Redis materialization (median of {args.repeats})", [base_e2e, base_write, platform_e2e, pack, write, activate]
    )
    console.print(
        f"ratio platform/baseline: pack + write {platform_e2e.rate / base_e2e.rate:.1f}x, "
        f"write only {write.rate / base_write.rate:.1f}x"
    )
    split = pack.median + write.median
    total = platform_e2e.median + activate.median
    console.print(
        f"pre-packed breakdown: pack {pack.median / split:.0%}, MSET {write.median / split:.0%} of {split:.2f}s; "
        f"end to end incl. activate {n_keys / total:,.0f} keys/s in {total:.2f}s"
    )
    server = statistics.median(server_seconds)
    console.print(
        f"MSET only: Redis executing MSET {server:.2f}s ({server / write.median:.0%}), "
        f"client side (redis-py encoding, socket, waiting) {write.median - server:.2f}s"
    )
    console.print(
        f"blobs: {blob_bytes / n_keys:.0f} B/key on average; Redis used_memory grew {redis_bytes / 2**20:,.0f} MiB "
        f"({redis_bytes / n_keys:.0f} B/key)"
    )
    ok = platform_e2e.rate >= TARGET_KEYS_PER_SECOND
    console.print(
        f"target >= {TARGET_KEYS_PER_SECOND:,} keys/s (platform pack + MSET): "
        + ("[green]met[/green]" if ok else "[red]NOT met[/red]")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
