"""Total memory of the running local stack: the sum of PSS over supervisord and every descendant process.

.venv/bin/python -m bench.stack_memory
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamml.config import Settings
from streamml.paths import StackPaths


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    root = int(StackPaths.from_settings(Settings()).supervisor_pidfile.read_text())
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = (int(fields[1]), stat.parent.joinpath("comm").read_text().strip())
    tree = {root}
    while grown := {p for p, (pp, _) in parents.items() if pp in tree and p not in tree}:
        tree |= grown
    rows = sorted(((pss_kib(p), parents[p][1], p) for p in tree if p in parents), reverse=True)
    for kib, name, pid in rows:
        print(f"{kib / 1024:8.0f} MiB  {name:<18} pid {pid}")
    print(f"{sum(r[0] for r in rows) / 1024:8.0f} MiB  total PSS over {len(rows)} processes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
