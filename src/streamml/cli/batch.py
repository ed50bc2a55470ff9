"""``streamml data ...``, ``features ...`` and ``pipelines ...``: the batch side (MinIO, Spark, the Redis snapshots,
Airflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from streamml import names
from streamml.cli.common import UsageError, console, err, errors_to_exit, feature_store, load_settings, print_json
from streamml.errors import StreamMLError

data_app = typer.Typer(no_args_is_help=True, help="MovieLens data: ingest into MinIO, synthesize for scale runs.")
features_app = typer.Typer(no_args_is_help=True, help="Batch features: Spark job into MinIO, snapshot into Redis.")
pipelines_app = typer.Typer(no_args_is_help=True, help="Airflow DAGs through the REST API v2.")


@data_app.command("ingest")
@errors_to_exit
def data_ingest(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="MovieLens directory (default: STREAMML_MOVIELENS_DIR, else download).")
    ] = None,
) -> None:
    """Validate MovieLens and upload it to MinIO raw/movielens/<snapshot>/ (all or nothing, idempotent)."""
    from streamml import tasks

    with console.status("validating and uploading"):
        print_json(tasks.ingest(load_settings(), directory))


@data_app.command("resolve")
@errors_to_exit
def data_resolve() -> None:
    """Find and validate MovieLens before anything starts: STREAMML_MOVIELENS_DIR when set, else the download in the
    cache (fetched now, checksum-verified, with a progress bar); exit 1 naming the fix when there is none."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from streamml.data.ingest import describe, source_dir

    columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("downloading MovieLens (ml-latest-small)", start=False, visible=False)

        def downloading(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total, visible=True)
            progress.start_task(task)

        directory = source_dir(load_settings(), on_progress=downloading)
    with console.status(f"validating {directory}"):
        snapshot = describe(directory)
    console.print(
        f"MovieLens at {directory}: {snapshot.ratings:,} ratings by {snapshot.users:,} users of {snapshot.movies:,} "
        f"movies (snapshot {snapshot.snapshot})",
        soft_wrap=True,
    )


@data_app.command("synth")
@errors_to_exit
def data_synth(
    out: Annotated[Path, typer.Option("--out", help="Directory to write ratings.csv and movies.csv into.")],
    ratings: Annotated[int, typer.Option("--ratings", min=1, help="Number of ratings.")] = 1_000_000,
    users: Annotated[int | None, typer.Option(help="Users (default: ratings / 150).")] = None,
    movies: Annotated[int | None, typer.Option(help="Movies (default: ratings / 50, at least 100).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a synthetic data set with MovieLens' schema and a realistic skew, for scale runs."""
    from streamml.data.movielens import write_synthetic

    with console.status(f"synthesizing {ratings:,} ratings"):
        frame, catalog = write_synthetic(out, ratings, users, movies, seed)
    console.print(
        f"wrote {len(frame):,} ratings, {frame['userId'].nunique():,} users, {len(catalog):,} movies to {out}"
    )


@features_app.command("build")
@errors_to_exit
def features_build(
    snapshot: Annotated[str, typer.Option(help="Raw snapshot id (printed by `streamml data ingest`).")],
    quantile: Annotated[
        float,
        typer.Option(min=names.SPLIT_QUANTILE_RANGE[0], max=names.SPLIT_QUANTILE_RANGE[1], help="Time split quantile."),
    ] = names.SPLIT_QUANTILE,
) -> None:
    """Run the Spark split + feature job (spark-submit on STREAMML_SPARK__MASTER) into s3a://features/v<n>/."""
    from streamml import tasks

    with console.status("spark-submit spark-jobs/build_features.py"):
        print_json(tasks.build_features(load_settings(), snapshot, quantile))


@features_app.command("materialize")
@errors_to_exit
def features_materialize(version: Annotated[int, typer.Option(help="Feature version to load into Redis.")]) -> None:
    """Load a feature version's online snapshot into Redis and switch feat:current to it."""
    from streamml import tasks

    with console.status(f"writing feature version {version} to Redis"):
        print_json(tasks.materialize(load_settings(), version))


@features_app.command("upgrade")
@errors_to_exit
def features_upgrade() -> None:
    """Materialize the active feature version again from its snapshot when Redis holds it in another state format
    than this code reads (after an upgrade that changed the layout); otherwise do nothing. ``./run.sh deploy`` and
    ``up`` run it."""
    from streamml import tasks
    from streamml.errors import DataValidationError
    from streamml.features import packing

    store = feature_store()
    version = store.active_version()
    blob = store.get_many(version, [], [])[0]
    try:
        if blob is None:
            raise DataValidationError("no globals blob")
        packing.unpack_globals(blob)
    except DataValidationError as exc:
        console.print(f"feature version {version} in Redis: {exc}; materializing it again from its snapshot")
        with console.status(f"writing feature version {version} to Redis"):
            print_json(tasks.materialize(load_settings(), version))
        return
    console.print(f"feature version {version} is in Redis in state format {packing.STATE_FORMAT}, as this code reads")


@features_app.command("current")
@errors_to_exit
def features_current() -> None:
    """Print the active online feature version (feat:current); exit 1 when none is loaded."""
    console.print(str(feature_store().active_version()))


@features_app.command("replayed")
@errors_to_exit
def features_replayed() -> None:
    """Say whether the stream period of the active feature version was fully replayed since it was loaded; exit 0
    when it was, 1 when not (``./run.sh deploy`` then starts a replay)."""
    store = feature_store()
    version = store.active_version()
    done = store.replayed(version)
    if done is None:
        console.print(f"the stream period of feature version {version} was not fully replayed yet")
        raise typer.Exit(1)
    console.print(
        f"the stream period of feature version {version} was fully replayed: {done['requests']:,} requests at "
        f"{done['pace']}, finished {done['finished']}"
    )


@features_app.command("get")
@errors_to_exit
def features_get(
    kind: Annotated[str, typer.Argument(help="user, movie or globals.")],
    entity_id: Annotated[int | None, typer.Argument(metavar="ID", help="The user or movie id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    feature_version: Annotated[int | None, typer.Option(help="Feature version (default: active).")] = None,
) -> None:
    """Print the online state of a user, a movie or the globals (what the scorer reads), as the feature updater
    left it; exit 1 when it has none."""
    from streamml.features.online import online_state

    try:
        state = online_state(feature_store(), kind, entity_id, feature_version)
    except ValueError:
        raise UsageError("say `features get user ID`, `features get movie ID` or `features get globals`") from None
    if as_json:
        print_json(state)
        return
    table = Table(
        "field", "value", title=f"{kind} {entity_id if entity_id is not None else ''} (v{state['feature_version']})"
    )
    for key, value in state.items():
        table.add_row(key, str(value))
    console.print(table)


@pipelines_app.command("trigger")
@errors_to_exit
def pipelines_trigger(
    dag_id: Annotated[str, typer.Argument(help=f"DAG id, e.g. {names.DAG_TRAINING}.")],
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
        raise UsageError(f"--conf is not valid JSON: {exc}") from None
    client = AirflowClient(load_settings().airflow)
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
        if final is None:
            return
        console.print(", ".join(f"{t} {d:.1f}s" for t, d in final.durations.items()))
        if final.state == "success":
            return
        failures = client.failures(dag_id, run_id)
    finally:
        client.close()
    for failure in failures:
        err.print(f"[red]task {failure.task_id} failed[/red] (try {failure.try_number}): {failure.error}")
        err.print(f"  its log: {failure.log_url}", soft_wrap=True)
    where = "above" if failures else "in the task logs in the Airflow UI"
    raise StreamMLError(f"run {run_id} of {dag_id} ended {final.state}; the cause is {where}")
