"""Scale-out: 1, 2 and 3 scorers in one consumer group, and 1, 2 and 3 feature updaters on one Redis.

Scorers: the platform variant of :mod:`bench.scorer` (the real Worker + ScorerHandler, the same model), N processes
in one consumer group over the same requests, produced once every member holds partitions (a fresh topic of 6
partitions per run, so 1, 2 and 3 members get even shares), each pinned to a core in turn (cpu 1, 0, 1, ...).
Group rate = requests / (last batch of any member - first message of any member); CPU per event = the members' CPU
seconds over the requests (each from its first message, or from the start of its loop if it got none); machine busy =
the share of both cores busy (/proc/stat, every process) from the first request produced to the last consumed. The
runs of different N alternate (1, 2, 3, 1, 2, 3, ...), each with a fresh group.

Updaters: N processes each run the platform's FeatureUpdaterHandler (the WATCH + MULTI/EXEC update) over the stream
period's feedback of its own users (user id mod N, as Kafka's partitioning by user key gives each member its users),
all at once against one Redis database holding the history snapshot; movie and globals states are shared, so
concurrent batches conflict and run again. Reported: events/s, conflicts per batch, and that every rating was applied.

    python -m bench.scale_out --scorers 1,2,3 --updaters 1,2,3 --requests 100000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.harness import console
from bench.scorer import copy_features, produce_requests, request_rows, run_platform
from streamml.config import get_settings

_ctx = mp.get_context("spawn")
PARTITIONS = 6
SETTLE_SECONDS = 3.0
"""After every member holds partitions, before the requests are produced."""


def scorer_group(
    settings: Any, base: dict[str, Any], replicas: int, rows: list[tuple[int, int, int]], timeout: float
) -> dict[str, float]:
    """One run of ``replicas`` scorers in a fresh group on a fresh topic: the requests are produced only once every
    member holds partitions (KIP-848 assigns member by member, and the first member would drain a pre-produced topic
    alone while the others still load the model), then the run lasts until the group has consumed them all."""
    from streamml.streaming.clients import ensure_topics

    tag = f"scorers{replicas}-{uuid.uuid4().hex[:6]}"
    topic, group = f"{base['run']}.requests.{tag}", f"{base['run']}-{tag}"
    ensure_topics(settings.kafka, [topic], partitions=PARTITIONS)
    counter, stop, results = _ctx.Value("q", 0), _ctx.Event(), _ctx.Queue()
    readies = [_ctx.Event() for _ in range(replicas)]
    procs = []
    for i, ready in enumerate(readies):
        cfg = {**base, "requests": topic, "group": group, "limit": len(rows), "counter": counter,
               "cpu": (1 + i) % (os.cpu_count() or 1)}  # fmt: skip
        procs.append(_ctx.Process(target=run_platform, args=(cfg, results, ready, stop)))
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    if not all(ready.wait(max(deadline - time.monotonic(), 0)) for ready in readies):
        stop.set()
        raise SystemExit(f"{replicas} scorers: not every member was assigned partitions in {timeout:.0f} s")
    time.sleep(SETTLE_SECONDS)  # let the group finish moving partitions to the last member
    machine = machine_cpu()
    produce_seconds = produce_requests(settings, topic, rows, f"{base['run']}-{tag}")
    while counter.value < len(rows) and time.monotonic() < deadline:
        time.sleep(0.05)
    busy_share = machine_busy_since(machine)
    stop.set()
    members = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    busy = [m for m in members if m["first"] is not None]
    seconds = max(m["last"] for m in busy) - min(m["first"] for m in busy)
    count = sum(m["count"] for m in members)
    cpu = sum(m["cpu"] for m in members)
    rate, cpu_us = count / seconds, 1e6 * cpu / count
    return {"count": count, "seconds": seconds, "rate": rate, "cpu_us_per_event": cpu_us, "busy_members": len(busy),
            "produce_seconds": produce_seconds, "machine_busy": busy_share}  # fmt: skip


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of every core since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def machine_busy_since(start: tuple[int, int]) -> float:
    """The share of the whole machine's CPU (every process: scorers, broker, Redis, the producer) busy since
    ``start``: near 1.0 means more members cannot go faster here."""
    busy, total = machine_cpu()
    return (busy - start[0]) / max(total - start[1], 1)


def run_updater_share(share: int, of: int, batch: int, ready: Any, go: Any, results: Any) -> None:
    """Apply the stream period's feedback of users with ``user_id % of == share``, in batches, as one updater."""
    from bench.updater import feedback_messages
    from streamml.config import Settings
    from streamml.data import movielens
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.updater import FeatureUpdaterHandler

    class Counting(RedisFeatureStore):
        conflicts = 0

        def update_atomically(self, *args: Any, **kw: Any) -> int:
            n = super().update_atomically(*args, **kw)
            Counting.conflicts += n
            return n

    ratings, _ = movielens.load(Path(os.environ["STREAMML_MOVIELENS_DIR"]))
    _, stream, _ = movielens.time_split(ratings)
    messages = feedback_messages(stream[stream.userId % of == share])
    store = Counting(redis_client(Settings().redis))
    handler = FeatureUpdaterHandler(store)
    ready.release()
    go.wait()
    started, batches = time.perf_counter(), 0
    for start in range(0, len(messages), batch):
        result = handler(messages[start : start + batch])
        if result.sink is not None:
            result.sink()
            batches += 1
    results.put({"count": len(messages), "first": started, "last": time.perf_counter(),
                 "conflicts": Counting.conflicts, "batches": batches})  # fmt: skip


def updater_group(replicas: int, batch: int) -> dict[str, float]:
    """One run of ``replicas`` updaters on a fresh history snapshot; checks that every rating was applied."""
    from bench.updater import load_snapshot

    store, _, _, _ = load_snapshot()
    ready, go, results = _ctx.Semaphore(0), _ctx.Event(), _ctx.Queue()
    procs = [
        _ctx.Process(target=run_updater_share, args=(i, replicas, batch, ready, go, results)) for i in range(replicas)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire(timeout=120)
    go.set()
    members = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    count = sum(m["count"] for m in members)
    if store.applied_count(1) != count:
        raise SystemExit(f"{replicas} updaters applied {store.applied_count(1)} of {count} ratings")
    seconds = max(m["last"] for m in members) - min(m["first"] for m in members)
    conflicts, batches = sum(m["conflicts"] for m in members), sum(m["batches"] for m in members)
    return {"count": count, "seconds": seconds, "rate": count / seconds, "conflicts_per_batch": conflicts / batches}


def table(title: str, runs: dict[int, list[dict[str, float]]], *extras: str) -> dict[str, Any]:
    t = Table(title=title)
    for name in ("processes", "runs", "events/s (median)", "events/s (min-max)", "x one process", *extras):
        t.add_column(name, justify="right")
    one = statistics.median(r["rate"] for r in runs[min(runs)])
    out = {}
    for n, rs in sorted(runs.items()):
        rates = [r["rate"] for r in rs]
        median = statistics.median(rates)
        details = {extra: statistics.median(r[extra] for r in rs) for extra in extras}
        t.add_row(str(n), str(len(rs)), f"{median:,.0f}", f"{min(rates):,.0f}-{max(rates):,.0f}", f"{median / one:.2f}",
                  *(f"{v:.2f}" for v in details.values()))  # fmt: skip
        out[str(n)] = {"median": median, "min": min(rates), "max": max(rates), **details}
    console.print(t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scorers", default="1,2,3", help="scorer group sizes; empty to skip")
    ap.add_argument("--updaters", default="1,2,3", help="updater counts; empty to skip")
    ap.add_argument("--requests", type=int, default=100_000, help="requests each scorer group consumes")
    ap.add_argument("--runs", type=int, default=3, help="runs of each size, alternating")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--model-uri", default="models:/movielens-like/1")
    ap.add_argument("--redis-db", type=int, default=14, help="scratch Redis database (flushed)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.redis_db == 0:
        ap.error("--redis-db must be a scratch database, not the platform's")
    os.environ["STREAMML_REDIS__DB"] = str(args.redis_db)  # before any get_settings(), inherited by the children
    settings = get_settings()
    console.print(f"{os.cpu_count()} cpus, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report: dict[str, Any] = {}
    scorers = [int(x) for x in args.scorers.split(",") if x.strip()]
    updaters = [int(x) for x in args.updaters.split(",") if x.strip()]
    if scorers:
        report["scorers"] = bench_scorers(settings, scorers, args)
    if updaters:
        runs: dict[int, list[dict[str, float]]] = {}
        for _ in range(args.runs):
            for n in updaters:
                runs.setdefault(n, []).append(updater_group(n, args.batch))
                console.print(f"  {n} updater(s): {runs[n][-1]['rate']:,.0f} events/s")
        report["updaters"] = table("feature updaters on one Redis (WATCH + MULTI/EXEC)", runs, "conflicts_per_batch")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def bench_scorers(settings: Any, sizes: list[int], args: argparse.Namespace) -> dict[str, Any]:
    from confluent_kafka.admin import AdminClient

    from streamml.stores.redis_client import redis_client
    from streamml.streaming.clients import admin_config, ensure_topics

    run = f"bench.{uuid.uuid4().hex[:12]}"
    topics = {k: f"{run}.{k}" for k in ("requests", "predictions", "dlq", "shadow")}
    scratch = redis_client(settings.redis)
    scratch.flushdb()
    try:
        version, _ = copy_features(settings, 0)
        ensure_topics(settings.kafka, [topics[k] for k in ("predictions", "dlq", "shadow")], partitions=PARTITIONS)
        rows = request_rows(settings, version, args.requests)
        base = {"run": run, "topic_prefix": run, "model_uri": args.model_uri, "batch": args.batch,
                "poll_timeout": 0.005, "idle_timeout": 0.5, "feature_version": version, "max_seconds": 300.0,
                **topics}  # fmt: skip
        runs: dict[int, list[dict[str, float]]] = {}
        for _ in range(args.runs):
            for n in sizes:
                runs.setdefault(n, []).append(scorer_group(settings, base, n, rows, timeout=300))
                last = runs[n][-1]
                console.print(
                    f"  {n} scorer(s): {last['rate']:,.0f} events/s, {last['busy_members']} got messages "
                    f"(requests produced in {last['produce_seconds']:.1f} s), machine {last['machine_busy']:.0%} busy"
                )
        title = f"scorers in one group, {args.requests:,} requests, 6 partitions"
        return table(title, runs, "cpu_us_per_event", "machine_busy")
    finally:
        admin = AdminClient(admin_config(settings.kafka))
        created = [t for t in admin.list_topics(timeout=10).topics if t.startswith(run)]
        for future in admin.delete_topics(created, operation_timeout=30).values() if created else []:
            future.result(30)
        scratch.flushdb()


if __name__ == "__main__":
    raise SystemExit(main())
