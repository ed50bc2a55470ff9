"""A feature updater process for integration tests: the platform's run_updater on the test's own topics and group.

python updater_proc.py FEEDBACK DLQ GROUP        Redis db from STREAMML_REDIS__DB
"""

from __future__ import annotations

import sys

from streamml.config import Settings
from streamml.logging import configure_logging
from streamml.streaming.runners import run_updater


def main() -> None:
    feedback, dlq, group = sys.argv[1:]
    configure_logging("INFO")
    run_updater(Settings(), 250, topic=feedback, dlq=dlq, group=group)


if __name__ == "__main__":
    main()
