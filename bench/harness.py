"""Small shared pieces of the benchmarks: a stopwatch, a result table, and a process-tree memory sampler.

The sampler also runs on its own, to measure a command together with every process it starts (spark-submit's JVM,
the PySpark driver, Python workers)::

    python -m bench.harness run -- /usr/bin/time -v .venv/bin/streamml features build --snapshot ID
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(width=120)


@dataclass
class Lap:
    """Seconds of one timed block; ``seconds`` is set when the block ends."""

    seconds: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Lap]:
    lap = Lap()
    start = time.perf_counter()
    try:
        yield lap
    finally:
        lap.seconds = time.perf_counter() - start


@dataclass
class Row:
    """One line of a benchmark table: ``count`` items (keys) per run, the seconds of each repeated run."""

    name: str
    count: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        """Items per second of the median run."""
        return self.count / self.median

    def spread(self) -> str:
        rates = [self.count / s for s in self.seconds]
        return f"{min(rates):,.0f}-{max(rates):,.0f}"


def print_table(title: str, rows: Sequence[Row], unit: str = "keys") -> None:
    table = Table(title=title)
    table.add_column("phase")
    table.add_column(unit, justify="right")
    table.add_column("runs", justify="right")
    table.add_column("median s", justify="right")
    table.add_column(f"{unit}/s (median)", justify="right")
    table.add_column(f"{unit}/s (min-max)", justify="right")
    for row in rows:
        table.add_row(
            row.name, f"{row.count:,}", str(len(row.seconds)), f"{row.median:.3f}", f"{row.rate:,.0f}", row.spread()
        )
    console.print(table)


# Process-tree memory, from /proc (Linux only).


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += _children(current)
    return pids


def _status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in lines if ":" in line)


def _kib(value: str | None) -> int:
    return int(value.split()[0]) if value else 0


@dataclass
class TreeMemory:
    """Peaks seen while sampling a process tree (KiB)."""

    peak_tree_rss_kib: int = 0
    peak_process_hwm_kib: dict[str, int] = field(default_factory=dict)
    samples: int = 0

    def sample(self, root: int) -> None:
        total = 0
        for pid in _tree(root):
            status = _status(pid)
            if not status:
                continue
            total += _kib(status.get("VmRSS"))
            name = f"{status['Name'].strip()}[{pid}]"
            hwm = _kib(status.get("VmHWM"))
            self.peak_process_hwm_kib[name] = max(self.peak_process_hwm_kib.get(name, 0), hwm)
        self.peak_tree_rss_kib = max(self.peak_tree_rss_kib, total)
        self.samples += 1


def run_sampled(argv: Sequence[str], interval: float = 0.5) -> tuple[int, float, TreeMemory]:
    """Run ``argv``; sample its process tree's RSS every ``interval`` s. Return (exit code, wall seconds, peaks)."""
    memory = TreeMemory()
    start = time.perf_counter()
    proc = subprocess.Popen(argv)  # noqa: S603 - the benchmark runs the command it is given
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            memory.sample(proc.pid)
            done.wait(interval)

    sampler = threading.Thread(target=loop, daemon=True)
    sampler.start()
    code = proc.wait()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    return code, wall, memory


def main() -> int:
    parser = argparse.ArgumentParser(description="Run a command and report its wall time and process-tree memory.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run COMMAND (after --) and sample it")
    run.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not argv:
        parser.error("no command given")
    code, wall, memory = run_sampled(argv, args.interval)
    top = sorted(memory.peak_process_hwm_kib.items(), key=lambda item: -item[1])[:5]
    summary = {
        "exit_code": code,
        "wall_seconds": round(wall, 1),
        "samples": memory.samples,
        "peak_tree_rss_mib": round(memory.peak_tree_rss_kib / 1024),
        "peak_vmhwm_mib_by_process": {name: round(kib / 1024) for name, kib in top},
    }
    sys.stderr.write("bench.harness " + json.dumps(summary) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
