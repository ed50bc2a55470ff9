"""The one Streamlit command line that serves the dashboard, for ``streamml dashboard`` and the browser tests."""

from __future__ import annotations

import sys

from streamml.paths import DASHBOARD_ENTRY, repo_root


def streamlit_argv(host: str, port: int) -> list[str]:
    """``python -m streamlit run services/dashboard/app.py`` on ``host:port``: headless, no usage statistics, and a
    minimal toolbar (no "Deploy" button, which would offer to publish the platform's dashboard to Streamlit's
    cloud)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(repo_root() / DASHBOARD_ENTRY),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip
