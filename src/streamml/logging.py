"""Logging setup for entry points; library modules only call ``logging.getLogger(__name__)``."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str | None = None) -> None:
    """Configure the root logger once, from ``level`` or ``STREAMML_LOG_LEVEL`` (default INFO)."""
    logging.basicConfig(
        level=(level or os.environ.get("STREAMML_LOG_LEVEL", "INFO")).upper(), format=FORMAT, force=True
    )
    for noisy in ("botocore", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
