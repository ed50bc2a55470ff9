"""The one Streamlit command line of the dashboard."""

from __future__ import annotations

import sys

from streamml.dashboard.server import streamlit_argv
from streamml.paths import DASHBOARD_ENTRY, repo_root


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_streamlit_argv_runs_the_entry_headless_on_the_address() -> None:
    argv = streamlit_argv("0.0.0.0", 8601)  # noqa: S104 - an address, nothing binds here
    assert argv[:5] == [sys.executable, "-m", "streamlit", "run", str(repo_root() / DASHBOARD_ENTRY)]
    assert (repo_root() / DASHBOARD_ENTRY).is_file()
    assert option(argv, "--server.address") == "0.0.0.0"  # noqa: S104
    assert option(argv, "--server.port") == "8601"
    assert option(argv, "--server.headless") == "true"
    assert option(argv, "--browser.gatherUsageStats") == "false"


def test_streamlit_argv_hides_the_deploy_button() -> None:
    assert option(streamlit_argv("127.0.0.1", 8501), "--client.toolbarMode") == "minimal"


def test_every_option_is_one_streamlit_knows() -> None:
    from streamlit import config

    argv = streamlit_argv("127.0.0.1", 8501)
    options = [a.removeprefix("--") for a in argv[5:] if a.startswith("--")]
    assert len(options) == 5
    for name in options:
        config.get_option(name)  # raises RuntimeError for an option this Streamlit does not have
