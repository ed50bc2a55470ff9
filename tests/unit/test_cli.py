"""The command line maps errors to exit codes the same way in every command: bad arguments or settings exit 2, what
the platform answered exits 1, each with one red line naming the problem."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from streamml.cli import app
from streamml.config import get_settings


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_bad_arguments_exit_2_naming_the_fix() -> None:
    assert run("features", "get", "bogus") == (
        2,
        "error: say `features get user ID`, `features get movie ID` or `features get globals`\n",
    )
    code, out = run("train", "--param", "no-equals-sign")
    assert code == 2 and "--param takes NAME=VALUE" in out
    code, out = run("pipelines", "trigger", "x", "--conf", "{not json")
    assert code == 2 and "--conf is not valid JSON" in out
    code, out = run("replay", "--rate", "5", "--speedup", "2")
    assert code == 2 and "not both" in out


def test_invalid_settings_exit_2_pointing_at_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMML_API__PORT", "not-a-port")
    code, out = run("features", "current")
    assert code == 2 and "invalid settings (api.port:" in out and ".env.example" in out


def test_a_platform_error_exits_1_with_its_message_and_no_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMML_REDIS__PORT", "1")  # nothing listens there: Redis is down
    code, out = run("features", "current")
    assert code == 1 and out.startswith("error: Redis read of feat:current failed") and "Traceback" not in out


def test_every_group_and_the_model_comparison_are_commands() -> None:
    code, out = run("--help")
    assert code == 0
    for command in ("health", "stack", "data", "features", "pipelines", "models", "score", "replay", "train"):
        assert command in out
    code, out = run("models", "compare", "--help")
    assert code == 0 and "comparison table" in out
