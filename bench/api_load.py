"""The API's ``/predict`` latency for one pair per request at a fixed rate, from a real load generator (locust).

Pairs are the active feature version's stream part (users and movies the platform knows, at their own event times).
Each run holds ``--rate`` requests per second from ``--users`` locust users (``constant_throughput``), on
``/predict`` and, beside it in the same run order, on ``/health``: the same HTTP stack and load with no scoring, the
floor the scoring adds to. Runs alternate (health, predict, health, predict, ...), after a short unmeasured warm-up.
Locust runs from its own environment (``uvx --from locust==VERSION``), so the platform's venv does not carry it.
Latencies are locust's (milliseconds, rounded to whole ms below 100 ms); the API is the running stack's.

    python -m bench.api_load --rate 200 --seconds 30 --runs 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from bench.harness import console
from streamml.config import get_settings
from streamml.features.batch import read_part
from streamml.stores.features import RedisFeatureStore
from streamml.stores.redis_client import redis_client

LOCUST = "locust==2.47.0"
LOCUSTFILE = Path(__file__).with_name("locust_predict.py")
PERCENTILES = ("50%", "95%", "99%", "100%")


def pairs(limit: int) -> list[list[int]]:
    settings = get_settings()
    version = RedisFeatureStore(redis_client(settings.redis)).active_version()
    table = read_part(settings, version, "stream", columns=["userId", "movieId", "timestamp"]).slice(0, limit)
    return [list(row) for row in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True)]


def run_locust(host: str, path: str, rate: float, users: int, seconds: int, pairs_file: Path) -> dict[str, Any]:
    """One headless locust run; its aggregated stats row."""
    uvx = shutil.which("uvx") or str(Path.home() / ".local/bin/uvx")
    with tempfile.TemporaryDirectory(prefix="streamml-locust-") as out:
        prefix = os.path.join(out, "run")
        env = {**os.environ, "STREAMML_BENCH_PAIRS": str(pairs_file), "STREAMML_BENCH_PATH": path,
               "STREAMML_BENCH_USER_RATE": str(rate / users)}  # fmt: skip
        argv = [uvx, "--quiet", "--from", LOCUST, "locust", "-f", str(LOCUSTFILE), "--headless", "--users", str(users),
                "--spawn-rate", str(users), "--run-time", f"{seconds}s", "--host", host, "--csv", prefix,
                "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"]  # fmt: skip
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise SystemExit(f"locust failed ({done.returncode}):\n{done.stderr[-2000:]}")
        with open(prefix + "_stats.csv", newline="") as f:  # noqa: PTH123
            row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    return {
        "path": path,
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "rate": float(row["Requests/s"]),
        **{p: float(row[p]) for p in PERCENTILES},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second, all users together")
    ap.add_argument("--users", type=int, default=40, help="locust users sharing the rate")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=5000, help="distinct (user, movie, time) triples, cycled")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    settings = get_settings()
    host = f"http://{settings.api.host}:{settings.api.port}"
    httpx.get(host + "/health", timeout=10).raise_for_status()
    console.print(f"{os.cpu_count()} cpus, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {host}")
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="streamml-pairs-") as f:
        json.dump(pairs(args.pairs), f)
        f.flush()
        pairs_file = Path(f.name)
        run_locust(host, "/predict", args.rate, args.users, 5, pairs_file)  # warm-up: model, connections
        results: dict[str, list[dict[str, Any]]] = {"/health": [], "/predict": []}
        for i in range(args.runs):
            for path in results:
                results[path].append(run_locust(host, path, args.rate, args.users, args.seconds, pairs_file))
                r = results[path][-1]
                console.print(f"  run {i + 1} {path}: {r['rate']:.1f} req/s, p50 {r['50%']:.0f} ms, "
                              f"p99 {r['99%']:.0f} ms, max {r['100%']:.0f} ms, {r['failures']} failures")  # fmt: skip
    t = Table(title=f"{args.rate:.0f} requests/s, one pair each, {args.users} locust users, {args.seconds} s per run")
    for name in ("route", "runs", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "failures"):
        t.add_column(name, justify="right")
    for path, rs in results.items():
        cells = [f"{statistics.median(r[p] for r in rs):.0f} ({min(r[p] for r in rs):.0f}-{max(r[p] for r in rs):.0f})"
                 for p in PERCENTILES]  # fmt: skip
        rate = statistics.median(r["rate"] for r in rs)
        t.add_row(path, str(len(rs)), f"{rate:.1f}", *cells, str(sum(r["failures"] for r in rs)))
    console.print(t)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
