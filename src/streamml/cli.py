"""The one command line: ``streamml ...`` (also ``python -m streamml``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
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
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
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


@stack_app.command("start")
def stack_start(name: Annotated[str, typer.Argument(help="Program to start, e.g. replayer.")]) -> None:
    """Start one program of the running stack (the replayer is started this way, after a champion exists)."""
    from streamml.runtime.stack import LocalStack

    try:
        LocalStack(_settings()).start(name)
    except StreamMLError as exc:
        raise _fail(exc) from None


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


data_app = typer.Typer(no_args_is_help=True, help="MovieLens data: ingest into MinIO, synthesize for scale runs.")
features_app = typer.Typer(no_args_is_help=True, help="Batch features: Spark job into MinIO, snapshot into Redis.")
pipelines_app = typer.Typer(no_args_is_help=True, help="Airflow DAGs through the REST API v2.")
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(pipelines_app, name="pipelines")


def _print_json(value: object) -> None:
    import json

    console.print_json(json.dumps(value, default=str))


@data_app.command("ingest")
def data_ingest(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="MovieLens directory (default: STREAMML_MOVIELENS_DIR, else download).")
    ] = None,
) -> None:
    """Validate MovieLens and upload it to MinIO raw/movielens/<snapshot>/ (all or nothing, idempotent)."""
    from streamml import tasks

    try:
        with console.status("validating and uploading"):
            _print_json(tasks.ingest(_settings(), directory))
    except StreamMLError as exc:
        raise _fail(exc) from None


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option("--out", help="Directory to write ratings.csv and movies.csv into.")],
    ratings: Annotated[int, typer.Option("--ratings", min=1, help="Number of ratings.")] = 1_000_000,
    users: Annotated[int | None, typer.Option(help="Users (default: ratings / 150).")] = None,
    movies: Annotated[int | None, typer.Option(help="Movies (default: ratings / 50, at least 100).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a synthetic data set with MovieLens' schema and a realistic skew, for scale runs."""
    from streamml.data.movielens import synthesize

    n_users = users or max(10, ratings // 150)
    n_movies = movies or max(100, ratings // 50)
    with console.status(f"synthesizing {ratings:,} ratings"):
        frame, catalog = synthesize(ratings, n_users, n_movies, seed)
        out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out / "ratings.csv", index=False)
        catalog.to_csv(out / "movies.csv", index=False)
    console.print(
        f"wrote {len(frame):,} ratings, {frame['userId'].nunique():,} users, {len(catalog):,} movies to {out}"
    )


@features_app.command("build")
def features_build(
    snapshot: Annotated[str, typer.Option(help="Raw snapshot id (printed by `streamml data ingest`).")],
    quantile: Annotated[float, typer.Option(min=0.5, max=0.95, help="Time split quantile.")] = 0.8,
) -> None:
    """Run the Spark split + feature job (spark-submit on STREAMML_SPARK__MASTER) into s3a://features/v<n>/."""
    from streamml import tasks

    try:
        with console.status("spark-submit spark-jobs/build_features.py"):
            _print_json(tasks.build_features(_settings(), snapshot, quantile))
    except StreamMLError as exc:
        raise _fail(exc) from None


@features_app.command("materialize")
def features_materialize(version: Annotated[int, typer.Option(help="Feature version to load into Redis.")]) -> None:
    """Load a feature version's online snapshot into Redis and switch feat:current to it."""
    from streamml import tasks

    try:
        with console.status(f"writing feature version {version} to Redis"):
            _print_json(tasks.materialize(_settings(), version))
    except StreamMLError as exc:
        raise _fail(exc) from None


@pipelines_app.command("trigger")
def pipelines_trigger(
    dag_id: Annotated[str, typer.Argument(help="DAG id, e.g. movielens_training.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow task states until the run ends.")] = False,
    conf: Annotated[str, typer.Option(help="Run conf as JSON, e.g. '{\"quantile\": 0.8}'.")] = "{}",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the run.")] = 3600.0,
) -> None:
    """Trigger a DAG run through Airflow's REST API v2; with --wait show task progress and exit 1 on failure."""
    import json

    from streamml.airflow_client import AirflowClient, RunStatus

    try:
        run_conf = json.loads(conf)
    except json.JSONDecodeError as exc:
        err.print(f"[red]error:[/red] --conf is not valid JSON: {exc}")
        raise typer.Exit(2) from None
    client = AirflowClient(_settings().airflow)
    try:
        run_id = client.trigger(dag_id, run_conf)
        console.print(f"triggered {dag_id} run {run_id}")
        if not wait:
            return
        final: RunStatus | None = None
        for final in client.follow(dag_id, run_id, timeout=timeout):
            done = sum(s == "success" for s in final.tasks.values())
            states = ", ".join(f"{t}={s}" for t, s in final.tasks.items())
            console.print(f"[{done}/{len(final.tasks)}] run {final.state}: {states}")
    except StreamMLError as exc:
        raise _fail(exc) from None
    finally:
        client.close()
    if final is not None:
        console.print(", ".join(f"{t} {d:.1f}s" for t, d in final.durations.items()))
        if final.state != "success":
            err.print(f"[red]error:[/red] run {run_id} ended {final.state}; see the task logs in the Airflow UI")
            raise typer.Exit(1)


@features_app.command("current")
def features_current() -> None:
    """Print the active online feature version (feat:current); exit 1 when none is loaded."""
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client

    version = RedisFeatureStore(redis_client(_settings().redis)).current_version()
    if version is None:
        err.print("no online feature version yet; run the movielens_training DAG")
        raise typer.Exit(1)
    console.print(str(version))


@features_app.command("replayed")
def features_replayed() -> None:
    """Say whether the stream period of the active feature version was fully replayed since it was loaded; exit 0
    when it was, 1 when not (``./run.sh deploy`` then starts a replay)."""
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client

    store = RedisFeatureStore(redis_client(_settings().redis))
    try:
        version = store.current_version()
        done = store.replayed(version) if version is not None else None
    except StreamMLError as exc:
        raise _fail(exc) from None
    if done is None:
        console.print(f"the stream period of feature version {version} was not fully replayed yet")
        raise typer.Exit(1)
    console.print(
        f"the stream period of feature version {version} was fully replayed: {done['requests']:,} requests at "
        f"{done['pace']}, finished {done['finished']}"
    )


@features_app.command("get")
def features_get(
    kind: Annotated[str, typer.Argument(help="user, movie or globals.")],
    entity_id: Annotated[int | None, typer.Argument(metavar="ID", help="The user or movie id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    feature_version: Annotated[int | None, typer.Option(help="Feature version (default: active).")] = None,
) -> None:
    """Print the online state of a user, a movie or the globals (what the scorer reads), as the feature updater
    left it; exit 1 when it has none."""
    import dataclasses
    import json

    from streamml.features import spec
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client

    unpack = {"user": spec.unpack_user, "movie": spec.unpack_movie, "globals": spec.unpack_globals}.get(kind)
    if unpack is None or (kind != "globals") != (entity_id is not None):
        err.print("[red]error:[/red] say `features get user ID`, `features get movie ID` or `features get globals`")
        raise typer.Exit(2)
    store = RedisFeatureStore(redis_client(_settings().redis))
    try:
        version = feature_version or store.current_version()
        if version is None:
            raise StreamMLError("no online feature version yet; run the movielens_training DAG")
        wanted = [] if entity_id is None else [entity_id]
        blob = store.get_many(version, wanted if kind == "user" else [], wanted if kind == "movie" else [])[0]
        if blob is None:
            raise StreamMLError(f"{kind} {entity_id} has no online state in feature version {version}")
        state = dataclasses.asdict(unpack(blob))  # type: ignore[call-overload]
    except StreamMLError as exc:
        raise _fail(exc) from None
    state = {"feature_version": version, "kind": kind, "id": entity_id, **state}
    if as_json:
        console.print_json(json.dumps(state))
        return
    table = Table("field", "value", title=f"{kind} {entity_id if entity_id is not None else ''} (v{version})")
    for key, value in state.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command()
def score(
    batch_size: Annotated[
        int | None, typer.Option(help="Messages per micro-batch (default STREAMML_SCORER__BATCH_SIZE).")
    ] = None,
) -> None:
    """Run the scorer: ratings.requests.v1 -> predictions.v1 + Redis pred:{id}, with @champion (hot reload)."""
    from streamml.streaming.runners import run_scorer

    configure_logging("INFO")
    settings = _settings()
    try:
        run_scorer(settings, batch_size or settings.scorer.batch_size)
    except StreamMLError as exc:
        raise _fail(exc) from None


@app.command("update-features")
def update_features(batch_size: Annotated[int, typer.Option(help="Messages per micro-batch.")] = 500) -> None:
    """Run the feature updater: ratings.feedback.v1 -> incremental online features in Redis."""
    from streamml.streaming.runners import run_updater

    configure_logging("INFO")
    try:
        run_updater(_settings(), batch_size)
    except StreamMLError as exc:
        raise _fail(exc) from None


@app.command()
def replay(
    rate: Annotated[
        float | None, typer.Option(help="Requests per second (open loop); default STREAMML_REPLAY__RATE.")
    ] = None,
    speedup: Annotated[float | None, typer.Option(help="Replay event time this many times faster.")] = None,
    limit: Annotated[int | None, typer.Option(help="Stop after this many requests.")] = None,
    feedback_delay: Annotated[
        float | None,
        typer.Option(help="Seconds between a request and its true rating; default STREAMML_REPLAY__FEEDBACK_DELAY."),
    ] = None,
    feature_version: Annotated[
        int | None, typer.Option(help="Whose stream period to replay (default: active).")
    ] = None,
    again: Annotated[
        bool | None,
        typer.Option(
            "--again/--once",
            help="Replay even if the stream period was fully replayed on this feature version already (its ratings "
            "are not applied twice); default STREAMML_REPLAY__AGAIN.",
        ),
    ] = None,
) -> None:
    """Replay the stream period as live requests (and feedback) in time order, open loop, with a progress bar.

    A period fully replayed on a feature version is not replayed again unless asked (--again): its feedback would
    change nothing, and the platform would score requests with features that already saw their ratings."""
    from confluent_kafka import Producer
    from rich.progress import Progress

    from streamml import names as n
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.clients import ensure_topics, producer_config
    from streamml.streaming.replayer import Pace
    from streamml.streaming.replayer import replay as run_replay
    from streamml.streaming.runners import stream_ratings

    if rate is not None and speedup is not None:
        err.print("[red]error:[/red] give one of --rate N or --speedup X, not both")
        raise typer.Exit(2)
    settings = _settings()
    if rate is None and speedup is None:
        rate = settings.replay.rate
    if feedback_delay is None:
        feedback_delay = settings.replay.feedback_delay
    try:
        store = RedisFeatureStore(redis_client(settings.redis))
        version = feature_version or store.current_version()
        if version is None:
            raise StreamMLError("no feature version loaded; run the movielens_training DAG first")
        done = store.replayed(version)
        if done is not None and not (settings.replay.again if again is None else again):
            console.print(
                f"the stream period of feature version {version} was fully replayed already ({done['requests']:,} "
                f"requests, finished {done['finished']}); not replaying it again. Replay anyway with "
                "`streamml replay --again` (or STREAMML_REPLAY__AGAIN=true ./run.sh deploy)."
            )
            return
        from streamml.features.batch import read_manifest

        total = read_manifest(settings, version)["rows"]["stream"]
        ensure_topics(settings.kafka, n.TOPICS)
        producer = Producer(producer_config(settings.kafka, client_id="streamml-replayer"))
        goal = min(total, limit or total)
        pace = f"{rate:g} requests/s" if rate else f"{speedup:g}x event time"
        console.print(
            f"replaying {goal:,} requests of feature version {version} at {pace}, feedback +{feedback_delay:g} s"
        )
        # A live bar on a terminal; a line per 1,000 requests in a log file (the supervised replayer).
        with Progress(console=console, disable=not console.is_terminal) as progress:
            task = progress.add_task("replaying", total=goal)

            def report(k: int) -> None:
                progress.update(task, completed=k)
                if not console.is_terminal:
                    console.print(f"{k:,}/{goal:,} requests sent")

            sent = run_replay(
                stream_ratings(settings, version),
                producer,
                Pace(rate=rate, speedup=speedup),
                feedback_delay=feedback_delay,
                limit=limit,
                on_progress=report,
            )
            progress.update(task, completed=sent)
        if sent >= total:
            from datetime import UTC, datetime

            finished = datetime.now(UTC).isoformat(timespec="seconds")
            store.mark_replayed(version, {"requests": sent, "finished": finished, "pace": pace})
    except StreamMLError as exc:
        raise _fail(exc) from None
    console.print(f"replayed {sent:,} requests from feature version {version}")


@app.command()
def parity(
    rate: Annotated[float, typer.Option(help="Requests per second of the replay.")] = 20.0,
    feedback_delay: Annotated[float, typer.Option(help="Seconds between a request and its true rating.")] = 0.02,
    limit: Annotated[int | None, typer.Option(help="Replay only the first N ratings of the stream period.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the last predictions.")] = 300.0,
) -> None:
    """Per-request parity: reset the active feature version to its snapshot, replay its stream period, and compare
    every online prediction with the offline point-in-time features and score of its rating row; exit 1 on any real
    mismatch (stale and ahead predictions are timing, reported apart). Run it on a quiet stack: it resets the online
    features."""
    from streamml.verification.parity import replay_and_compare

    settings = _settings()
    try:
        report, _ = replay_and_compare(settings, rate, feedback_delay, limit, timeout, say=console.print)
    except StreamMLError as exc:
        raise _fail(exc) from None
    table = Table("what", "value", title=f"per-request parity at {rate:g} requests/s, feedback +{feedback_delay:g} s")
    table.add_row("predictions compared", f"{report.compared:,}")
    table.add_row("identical (features and score within 1e-9)", f"{report.identical:,} ({report.identical_share:.2%})")
    table.add_row("stale (an earlier rating not applied yet)", f"{report.stale:,}")
    table.add_row("ahead (a later rating applied already)", f"{report.ahead:,}")
    table.add_row("real mismatches", f"{report.mismatch:,}")
    table.add_row("without an offline row", f"{report.unmatched:,}")
    table.add_row("max |score diff|", f"{report.max_score_diff:.2e}")
    console.print(table)
    for line in report.examples:
        err.print(f"[red]mismatch:[/red] {line}")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def metrics(batch_size: Annotated[int, typer.Option(help="Messages per micro-batch.")] = 1000) -> None:
    """Run the metrics aggregator: predictions + feedback -> metrics.v1, Redis metrics:*, the metric log."""
    from streamml.runtime.programs import StackPaths
    from streamml.streaming.runners import run_metrics

    configure_logging("INFO")
    settings = _settings()
    try:
        run_metrics(settings, StackPaths.from_settings(settings).state / "metrics" / "metric_log.csv", batch_size)
    except StreamMLError as exc:
        raise _fail(exc) from None


@app.command()
def api() -> None:
    """Run the FastAPI service (STREAMML_API__HOST:STREAMML_API__PORT); OpenAPI docs at /docs."""
    import uvicorn

    from streamml.api import create_app

    configure_logging("INFO")
    settings = _settings()
    uvicorn.run(create_app(settings), host=settings.api.host, port=settings.api.port, log_level="info")


@app.command()
def dashboard() -> None:
    """Run the Streamlit dashboard (STREAMML_DASHBOARD__HOST:STREAMML_DASHBOARD__PORT)."""
    import os

    from streamml.paths import DASHBOARD_ENTRY, repo_root

    settings = _settings()
    entry = repo_root() / DASHBOARD_ENTRY
    if not entry.exists():
        err.print(f"[red]error:[/red] dashboard entry {entry} not found (run from a checkout of streamml)")
        raise typer.Exit(1)
    d = settings.dashboard
    argv = [sys.executable, "-m", "streamlit", "run", str(entry), "--server.headless", "true", "--server.address",
            d.host, "--server.port", str(d.port), "--browser.gatherUsageStats", "false"]  # fmt: skip
    os.execv(sys.executable, argv)  # noqa: S606 - replace this process so supervisord signals streamlit itself


models_app = typer.Typer(no_args_is_help=True, help="The model registry (MLflow): promote, roll back.")
app.add_typer(models_app, name="models")


@models_app.command("promote")
def models_promote(version: Annotated[int, typer.Argument(help="Registered version of movielens-like.")]) -> None:
    """Make VERSION the @champion now (no gate) and tell the scorers through model-events.v1."""
    from streamml.models.registry import promote

    try:
        _print_json(promote(_settings(), version, reason="promoted by hand (streamml models promote)"))
    except StreamMLError as exc:
        raise _fail(exc) from None


@models_app.command("rollback")
def models_rollback() -> None:
    """Put the previous @champion back and tell the scorers."""
    from streamml.models.registry import rollback

    try:
        _print_json(rollback(_settings()))
    except StreamMLError as exc:
        raise _fail(exc) from None


@app.command()
def train(
    model_type: Annotated[str, typer.Option(help="hgb, logreg, rf or knn.")] = "hgb",
    param: Annotated[
        list[str] | None, typer.Option("--param", help="A hyperparameter of the model type, NAME=VALUE (repeatable).")
    ] = None,
    feature_version: Annotated[int | None, typer.Option(help="Feature version to train on (default: active).")] = None,
    promote: Annotated[bool, typer.Option("--promote/--no-promote", help="Run the promotion gate after.")] = True,
) -> None:
    """Train, evaluate (streaming and frozen modes), log to MLflow, register; then the promotion gate.

    Example: streamml train --model-type logreg --param C=0.5 --param max_iter=500
    """
    import json

    from streamml import tasks
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client

    params: dict[str, object] = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            err.print(f"[red]error:[/red] --param takes NAME=VALUE, got {item!r}")
            raise typer.Exit(2)
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    settings = _settings()
    try:
        version = feature_version or RedisFeatureStore(redis_client(settings.redis)).current_version()
        if version is None:
            raise StreamMLError("no feature version loaded; run the movielens_training DAG first")
        with console.status(f"training {model_type} on feature version {version}"):
            result = tasks.train(settings, version, {"model_type": model_type, model_type: params})
        _print_json(result)
        if promote:
            _print_json(tasks.promote(settings, int(result["version"])))
    except ValidationError as exc:
        err.print(f"[red]error:[/red] invalid model config: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from None
    except StreamMLError as exc:
        raise _fail(exc) from None
