"""The one command line: ``streamml ...`` (also ``python -m streamml``). Each module holds a group of commands; they
parse arguments, call the package and print. Errors become one red line and an exit code (:mod:`.common`)."""

from __future__ import annotations

from typing import Annotated

import typer

from streamml.cli import batch, models, stack, streaming
from streamml.logging import configure_logging

app = typer.Typer(no_args_is_help=True, add_completion=False, help="streamml: streaming MLOps on Kafka.")


@app.callback()
def _main(log_level: Annotated[str, typer.Option(help="Log level.")] = "WARNING") -> None:
    configure_logging(log_level)


app.add_typer(stack.stack_app, name="stack")
app.add_typer(batch.data_app, name="data")
app.add_typer(batch.features_app, name="features")
app.add_typer(batch.pipelines_app, name="pipelines")
app.add_typer(models.models_app, name="models")
app.command()(stack.health)
app.command("wait-for")(stack.wait_for)
app.command()(streaming.score)
app.command("update-features")(streaming.update_features)
app.command()(streaming.replay)
app.command()(streaming.parity)
app.command()(streaming.metrics)
app.command()(streaming.archive)
app.command()(streaming.api)
app.command()(streaming.dashboard)
app.command()(models.train)
