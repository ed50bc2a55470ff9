"""What every command shares: the consoles, the settings, and one mapping of errors to exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from streamml.config import Settings, get_settings
from streamml.errors import StreamMLError

if TYPE_CHECKING:
    from streamml.stores.features import RedisFeatureStore

# Wide enough for the health table when stdout is a pipe or a log file (rich would fall back to 80 columns).
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

P = ParamSpec("P")
R = TypeVar("R")


class UsageError(Exception):
    """The command line itself is wrong (exit 2), as opposed to what the platform answered (exit 1)."""


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors())


def load_settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        raise UsageError(f"invalid settings ({_validation_text(exc)}). Check .env against .env.example.") from None


def errors_to_exit(command: Callable[P, R]) -> Callable[P, R]:
    """Print an error as one red line: a :class:`UsageError`, a ``ValueError`` or a ``ValidationError`` (bad
    arguments or settings) exits 2, a :class:`StreamMLError` (what the platform answered) exits 1."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ValidationError as exc:
            err.print(f"[red]error:[/red] invalid value ({_validation_text(exc)})")
            raise typer.Exit(2) from None
        except (UsageError, ValueError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        except StreamMLError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None

    return run


def print_json(value: object) -> None:
    import json

    console.print_json(json.dumps(value, default=str))


def feature_store() -> RedisFeatureStore:
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client

    return RedisFeatureStore(redis_client(load_settings().redis))
