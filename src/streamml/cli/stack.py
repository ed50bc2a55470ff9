"""``streamml health``, ``wait-for`` and ``stack ...``: the local stack of real servers."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from streamml.cli.common import UsageError, console, err, errors_to_exit, load_settings

stack_app = typer.Typer(no_args_is_help=True, help="The local stack of real servers under supervisord.")


@errors_to_exit
def health() -> None:
    """Check every service for real and print a table; exit 1 when anything is down."""
    from streamml.runtime.stack import LocalStack

    rows = LocalStack(load_settings()).status()
    table = Table("service", "pid", "port", "state", "detail", title="streamml local stack")
    for r in rows:
        mark = "[green]healthy[/green]" if r.ok else "[red]down[/red]"
        ports = ",".join(map(str, r.ports)) or "-"
        table.add_row(r.service, ",".join(map(str, r.pids)) or "-", ports, f"{mark} ({r.state})", r.detail)
    console.print(table)
    if not all(r.ok for r in rows):
        raise typer.Exit(1)


@errors_to_exit
def wait_for(
    services: Annotated[list[str], typer.Argument(help="kafka redis minio mlflow airflow")],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 180.0,
) -> None:
    """Wait until the named services are healthy, with backoff; name what is still down on timeout."""
    from streamml.runtime import health as h

    def waiting(down: list[h.Health], left: float) -> None:
        err.print(f"waiting for {', '.join(d.service for d in down)} ({left:.0f}s left)")

    h.wait_for(services, load_settings(), timeout=timeout, on_wait=waiting)
    console.print(f"healthy: {', '.join(services)}")


@stack_app.command("up")
@errors_to_exit
def stack_up(
    timeout: Annotated[float, typer.Option(help="Seconds each stage may take to become healthy.")] = 240.0,
) -> None:
    """Start the local stack (a running one is left alone) and wait until every service is healthy."""
    from streamml.runtime.stack import LocalStack

    LocalStack(load_settings()).up(say=lambda m: console.print(f"[cyan]stack[/cyan] {m}"), timeout=timeout)
    console.print("[green]stack[/green] every service is healthy")


@stack_app.command("scale")
@errors_to_exit
def stack_scale(
    replicas: Annotated[int, typer.Argument(min=1, max=32, help="Scorer processes to run in the consumer group.")],
) -> None:
    """Run REPLICAS scorers in the running stack: starts the missing ones, stops (SIGTERM: commit, leave the group)
    the ones beyond; the others keep running. ./run.sh scale N also writes N to .env, so `up` keeps it."""
    from streamml.runtime.stack import LocalStack

    settings = load_settings()
    settings = settings.model_copy(update={"scorer": settings.scorer.model_copy(update={"replicas": replicas})})
    stack = LocalStack(settings)
    if not stack.supervisor.running():
        raise UsageError("the local stack is not running; start it with ./run.sh up")
    stack.up(say=lambda m: console.print(f"[cyan]stack[/cyan] {m}"))
    scorers = [p.name for p in stack.programs if p.service == "scorer"]
    console.print(f"[green]stack[/green] {len(scorers)} scorer(s): {', '.join(scorers)}")


@stack_app.command("accounts")
@errors_to_exit
def stack_accounts(
    server: Annotated[str, typer.Argument(help="kafka, minio or mlflow.")],
    auth_db: Annotated[str, typer.Option(help="mlflow: the URI of its basic-auth app's user store.")] = "",
) -> None:
    """Set one server's program accounts from .env, as its admin: Kafka's ACLs and topics (streamml.streaming.acl),
    MinIO's buckets, users and policies (stores/minio_auth.py), MLflow's users and permissions
    (stores/mlflow_auth.py). `stack up` does this itself; Compose's kafka-init, minio-init and mlflow-init run it."""
    settings = load_settings()
    if server == "kafka":
        from streamml.streaming.acl import ensure_accounts as kafka

        kafka(settings.kafka)
    elif server == "minio":
        from streamml.stores.minio_auth import ensure_accounts as minio

        minio(settings.minio)
    elif server == "mlflow" and auth_db:
        from streamml.stores.mlflow_auth import ensure_accounts as mlflow

        mlflow(settings.mlflow, auth_db)
    else:
        raise UsageError("usage: streamml stack accounts kafka|minio|mlflow (mlflow needs --auth-db URI)")
    console.print(f"[green]{server}[/green] accounts set")


@stack_app.command("down")
@errors_to_exit
def stack_down(
    purge: Annotated[bool, typer.Option("--purge", help="Also delete all data under .local/.")] = False,
) -> None:
    """Stop every process of the local stack."""
    from streamml.runtime.stack import LocalStack

    LocalStack(load_settings()).down(purge=purge)
    console.print("stack stopped" + (" and data deleted" if purge else ""))


@stack_app.command("start")
@errors_to_exit
def stack_start(name: Annotated[str, typer.Argument(help="Program to start, e.g. replayer.")]) -> None:
    """Start one program of the running stack (the replayer is started this way, after a champion exists)."""
    from streamml.runtime.stack import LocalStack

    LocalStack(load_settings()).start(name)


@stack_app.command("running")
@errors_to_exit
def stack_running() -> None:
    """Exit 0 when the local stack's supervisord is running, else 1 (for scripts)."""
    from streamml.runtime.stack import LocalStack

    raise typer.Exit(0 if LocalStack(load_settings()).supervisor.running() else 1)


@stack_app.command("log-path")
@errors_to_exit
def stack_log_path(
    service: Annotated[str, typer.Argument(help="Program name, e.g. kafka or airflow-scheduler.")],
) -> None:
    """Print the log file of a program of the local stack."""
    from streamml.runtime.stack import LocalStack

    stack = LocalStack(load_settings())
    programs = [p.name for p in stack.programs] + ["supervisord"]
    if service not in programs:
        raise UsageError(f"unknown program {service!r}; programs: {', '.join(programs)}")
    console.print(str(stack.paths.logs / f"{service}.log"), soft_wrap=True)
