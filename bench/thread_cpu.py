"""Where a running process spends its CPU, thread by thread: user + system time of every thread of ``--pid`` (or of
the supervised program ``--program``) over ``--seconds``, from ``/proc/<pid>/task/*/stat``, grouped by thread name
(librdkafka names its threads ``rdk:main``, ``rdk:broker<n>``, ...; Python's are the process name unless set).
Linux only. For the scorer while the deploy's replay runs at 50 requests/s::

    streamml replay --rate 50 &   # or ./run.sh deploy
    python -m bench.thread_cpu --program scorer --seconds 30
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from pathlib import Path

from rich.table import Table

from bench.harness import console

TICKS = os.sysconf("SC_CLK_TCK")


def thread_ticks(pid: int) -> dict[tuple[int, str], int]:
    """(thread id, name) -> user + system clock ticks so far, for every live thread of ``pid``."""
    ticks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[(int(task.name), name)] = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks


def program_pid(name: str) -> int:
    from streamml.config import Settings
    from streamml.runtime.stack import LocalStack

    info = LocalStack(Settings()).supervisor.processes().get(name)
    if not info or not info.get("pid"):
        raise SystemExit(f"program {name} is not running under the stack's supervisor")
    return int(info["pid"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--pid", type=int, help="process to watch")
    target.add_argument("--program", help="supervised program to watch (scorer, feature-updater, ...)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to watch")
    args = parser.parse_args()
    pid = args.pid or program_pid(args.program)
    before, start = thread_ticks(pid), time.monotonic()
    time.sleep(args.seconds)
    after, elapsed = thread_ticks(pid), time.monotonic() - start
    by_name: dict[str, float] = defaultdict(float)
    threads: dict[str, int] = defaultdict(int)
    for key, ticks in after.items():
        name = key[1].rstrip("0123456789") if key[1].startswith("rdk:broker") else key[1]
        by_name[name] += (ticks - before.get(key, 0)) / TICKS
        threads[name] += 1
    total = sum(by_name.values())
    table = Table(title=f"pid {pid}: CPU over {elapsed:.1f} s, {total / elapsed:.1%} of a core")
    for column in ("thread name", "threads", "CPU s", "% of a core", "share"):
        table.add_column(column, justify="left" if column == "thread name" else "right")
    for name, seconds in sorted(by_name.items(), key=lambda item: -item[1]):
        share = f"{seconds / total:.0%}" if total else "-"
        table.add_row(name, str(threads[name]), f"{seconds:.2f}", f"{seconds / elapsed:.1%}", share)
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
