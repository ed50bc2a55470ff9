"""End-to-end proof that the running platform streams correctly; exits non-zero on any failure.

.venv/bin/python verification/verify_streaming.py [--n 200] [--timeout 60]     (or ./run.sh verify)
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from streamml.config import get_settings
from streamml.errors import StreamMLError
from streamml.logging import configure_logging
from streamml.verification.streaming import run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="fresh requests to produce")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for every result")
    args = parser.parse_args()
    configure_logging("WARNING")
    console = Console()
    try:
        checks = run(get_settings(), n=args.n, timeout=args.timeout, say=console.print)
    except StreamMLError as exc:
        console.print(f"[red]FAIL[/red] {exc}")
        return 1
    table = Table("check", "result", "detail", title="streamml streaming verification")
    for c in checks:
        table.add_row(c.name, "[green]PASS[/green]" if c.ok else "[red]FAIL[/red]", c.detail)
    console.print(table)
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
