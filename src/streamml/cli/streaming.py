"""The streaming programs (``score``, ``update-features``, ``metrics``, ``archive``), the replay and parity runs,
and the API and dashboard servers."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from streamml.cli.common import UsageError, console, err, errors_to_exit, load_settings
from streamml.errors import StreamMLError
from streamml.logging import configure_logging


@errors_to_exit
def score(
    batch_size: Annotated[
        int | None, typer.Option(help="Messages per micro-batch (default STREAMML_SCORER__BATCH_SIZE).")
    ] = None,
) -> None:
    """Run the scorer: ratings.requests.v1 -> predictions.v1 + Redis pred:{id}, with @champion (hot reload)."""
    from streamml.streaming.runners import run_scorer

    configure_logging("INFO")
    settings = load_settings()
    run_scorer(settings, batch_size or settings.scorer.batch_size)


@errors_to_exit
def update_features(batch_size: Annotated[int, typer.Option(help="Messages per micro-batch.")] = 500) -> None:
    """Run the feature updater: ratings.feedback.v1 -> incremental online features in Redis."""
    from streamml.streaming.runners import run_updater

    configure_logging("INFO")
    run_updater(load_settings(), batch_size)


@errors_to_exit
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
    drift_from: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Inject drift from this request on (see --drift-kind); the drift monitor should alarm and retrain.",
        ),
    ] = None,
    drift_kind: Annotated[
        str,
        typer.Option(
            help="genre: the ratings of --drift-genre's movies become 5.5 - r (needs a period not replayed yet); "
            "twins: --drift-share of the ratings come from new users with the opposite taste."
        ),
    ] = "genre",
    drift_genre: Annotated[str, typer.Option(help="The genre whose ratings are turned over.")] = "Drama",
    drift_share: Annotated[float, typer.Option(min=0.01, max=1.0, help="Share of the ratings from the twins.")] = 0.5,
) -> None:
    """Replay the stream period as live requests (and feedback) in time order, open loop, with a progress bar.

    A period fully replayed on a feature version is not replayed again unless asked (--again): its feedback would
    change nothing, and the platform would score requests with features that already saw their ratings."""
    from rich.progress import Progress

    from streamml.streaming.replayer import Drift
    from streamml.streaming.runners import plan_replay, run_replay

    if rate is not None and speedup is not None:
        raise UsageError("give one of --rate N or --speedup X, not both")
    if drift_kind not in ("genre", "twins"):
        raise UsageError(f"--drift-kind is genre or twins, not {drift_kind!r}")
    settings = load_settings()
    plan = plan_replay(
        settings,
        rate=rate,
        speedup=speedup,
        limit=limit,
        feedback_delay=feedback_delay,
        feature_version=feature_version,
        again=again,
        drift=None if drift_from is None else Drift(drift_from, drift_kind, drift_genre, drift_share),  # type: ignore[arg-type]
    )
    if plan.skipped is not None:
        console.print(
            f"the stream period of feature version {plan.version} was fully replayed already "
            f"({plan.skipped['requests']:,} requests, finished {plan.skipped['finished']}); not replaying it again. "
            "Replay anyway with `streamml replay --again` (or STREAMML_REPLAY__AGAIN=true ./run.sh deploy)."
        )
        return
    console.print(
        f"replaying {plan.goal:,} requests of feature version {plan.version} at {plan.pace_text}, "
        f"feedback +{plan.feedback_delay:g} s"
        + ("" if plan.drift is None else f", {plan.drift.kind} drift from request {plan.drift.start:,}")
    )
    # A live bar on a terminal; a line per 1,000 requests in a log file (the supervised replayer).
    with Progress(console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("replaying", total=plan.goal)

        def report(k: int) -> None:
            progress.update(task, completed=k)
            if not console.is_terminal:
                console.print(f"{k:,}/{plan.goal:,} requests sent")

        sent = run_replay(settings, plan, on_progress=report)
        progress.update(task, completed=sent)
    console.print(f"replayed {sent:,} requests from feature version {plan.version}")


@errors_to_exit
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

    report, _ = replay_and_compare(load_settings(), rate, feedback_delay, limit, timeout, say=console.print)
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


@errors_to_exit
def metrics(batch_size: Annotated[int, typer.Option(help="Messages per micro-batch.")] = 1000) -> None:
    """Run the metrics aggregator: predictions + feedback -> metrics.v1, Redis metrics:*, the metric log."""
    from streamml.streaming.runners import run_metrics

    configure_logging("INFO")
    run_metrics(load_settings(), batch_size)


@errors_to_exit
def archive() -> None:
    """Run the feedback archive: ratings.feedback.v1 + what was served (Redis pred:{id}) -> parquet under
    s3://features/online/, each record exactly once (batch size and wait: STREAMML_ARCHIVE__*)."""
    from streamml.streaming.runners import run_archive

    configure_logging("INFO")
    run_archive(load_settings())


@errors_to_exit
def api() -> None:
    """Run the FastAPI service (STREAMML_API__HOST:STREAMML_API__PORT); OpenAPI docs at /docs."""
    import uvicorn

    from streamml.api import create_app

    configure_logging("INFO")
    settings = load_settings()
    uvicorn.run(create_app(settings), host=settings.api.host, port=settings.api.port, log_level="info")


@errors_to_exit
def dashboard() -> None:
    """Run the Streamlit dashboard (STREAMML_DASHBOARD__HOST:STREAMML_DASHBOARD__PORT)."""
    import os

    from streamml.dashboard.server import streamlit_argv
    from streamml.paths import DASHBOARD_ENTRY, repo_root

    settings = load_settings()
    entry = repo_root() / DASHBOARD_ENTRY
    if not entry.exists():
        raise StreamMLError(f"dashboard entry {entry} not found (run from a checkout of streamml)")
    argv = streamlit_argv(settings.dashboard.host, settings.dashboard.port)
    os.execv(sys.executable, argv)  # noqa: S606 - replace this process so supervisord signals streamlit itself
