"""The one command line: ``streamml ...`` (also ``python -m streamml``)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from streamml.config import Settings, get_settings
from streamml.errors import StreamMLError
from streamml.logging import configure_logging

app = typer.Typer(no_args_is_help=True, add_completion=False, help="streamml: streaming MLOps on Kafka.")
stack_app = typer.Typer(no_args_is_help=True, help="The local stack of real servers under supervisord.")
app.add_typer(stack_app, name="stack")

# Wide enough for the health table when stdout is a pipe or a log file (rich would fall back to 80 columns).
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)
logger = logging.getLogger(__name__)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors())
        err.print(f"[red]error:[/red] invalid settings ({problems}). Check .env against .env.example.")
        raise typer.Exit(2) from None


def _fail(exc: StreamMLError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


@app.callback()
def _main(log_level: Annotated[str, typer.Option(help="Log level.")] = "WARNING") -> None:
    configure_logging(log_level)


@app.command()
def health() -> None:
    """Check every service for real and print a table; exit 1 when anything is down."""
    from streamml.runtime.stack import LocalStack

    rows = LocalStack(_settings()).status()
    table = Table("service", "pid", "port", "state", "detail", title="streamml local stack")
    for r in rows:
        mark = "[green]healthy[/green]" if r.ok else "[red]down[/red]"
        table.add_row(
            r.service,
            ",".join(map(str, r.pids)) or "-",
            ",".join(map(str, r.ports)) or "-",
            f"{mark} ({r.state})",
            r.detail,
        )
    console.print(table)
    if not all(r.ok for r in rows):
        raise typer.Exit(1)


@app.command("wait-for")
def wait_for(
    services: Annotated[list[str], typer.Argument(help="kafka redis minio mlflow airflow")],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 180.0,
) -> None:
    """Wait until the named services are healthy, with backoff; name what is still down on timeout."""
    from streamml.runtime import health as h

    try:
        h.wait_for(
            services,
            _settings(),
            timeout=timeout,
            on_wait=lambda down, left: err.print(
                f"waiting for {', '.join(d.service for d in down)} ({left:.0f}s left)"
            ),
        )
    except StreamMLError as exc:
        raise _fail(exc) from None
    console.print(f"healthy: {', '.join(services)}")


@stack_app.command("up")
def stack_up(
    timeout: Annotated[float, typer.Option(help="Seconds each stage may take to become healthy.")] = 240.0,
) -> None:
    """Start the local stack (a running one is left alone) and wait until every service is healthy."""
    from streamml.runtime.stack import LocalStack

    try:
        LocalStack(_settings()).up(say=lambda m: console.print(f"[cyan]stack[/cyan] {m}"), timeout=timeout)
    except StreamMLError as exc:
        raise _fail(exc) from None
    console.print("[green]stack[/green] every service is healthy")


@stack_app.command("down")
def stack_down(
    purge: Annotated[bool, typer.Option("--purge", help="Also delete all data under .local/.")] = False,
) -> None:
    """Stop every process of the local stack."""
    from streamml.runtime.stack import LocalStack

    try:
        LocalStack(_settings()).down(purge=purge)
    except StreamMLError as exc:
        raise _fail(exc) from None
    console.print("stack stopped" + (" and data deleted" if purge else ""))


@stack_app.command("running")
def stack_running() -> None:
    """Exit 0 when the local stack's supervisord is running, else 1 (for scripts)."""
    from streamml.runtime.stack import LocalStack

    raise typer.Exit(0 if LocalStack(_settings()).supervisor.running() else 1)


@stack_app.command("log-path")
def stack_log_path(
    service: Annotated[str, typer.Argument(help="Program name, e.g. kafka or airflow-scheduler.")],
) -> None:
    """Print the log file of a program of the local stack."""
    from streamml.runtime.stack import LocalStack

    stack = LocalStack(_settings())
    names = [p.name for p in stack.programs] + ["supervisord"]
    if service not in names:
        err.print(f"[red]error:[/red] unknown program {service!r}; programs: {', '.join(names)}")
        raise typer.Exit(2)
    console.print(str(stack.paths.logs / f"{service}.log"), soft_wrap=True)
