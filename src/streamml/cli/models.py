"""``streamml train`` and ``models ...``: training, the registry's aliases and the model comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from streamml import names
from streamml.cli.common import UsageError, console, errors_to_exit, feature_store, load_settings, print_json

models_app = typer.Typer(no_args_is_help=True, help="The model registry (MLflow): promote, roll back, compare.")


@models_app.command("promote")
@errors_to_exit
def models_promote(version: Annotated[int, typer.Argument(help=f"Registered version of {names.MODEL_NAME}.")]) -> None:
    """Make VERSION the @champion now (no gate) and tell the scorers through model-events.v1."""
    from streamml.models.registry import promote

    print_json(promote(load_settings(), version, reason="promoted by hand (streamml models promote)"))


@models_app.command("rollback")
@errors_to_exit
def models_rollback() -> None:
    """Put the previous @champion back and tell the scorers."""
    from streamml.models.registry import rollback

    print_json(rollback(load_settings()))


@models_app.command("sign")
@errors_to_exit
def models_sign(
    versions: Annotated[list[int], typer.Argument(help=f"Registered versions of {names.MODEL_NAME} to sign.")],
) -> None:
    """Sign versions with STREAMML_MLFLOW__SIGNING_KEY, vouching for their files as they are now: for versions
    registered before signing existed, or after the key was rotated. Training signs what it registers itself; never
    sign a version you did not train."""
    from streamml.models.integrity import sign_version
    from streamml.stores.mlflow_client import client

    settings = load_settings()
    registry, key = client(settings.mlflow), settings.mlflow.signing_key.get_secret_value()
    signed = {v: sign_version(registry, settings.mlflow.tracking_uri, names.MODEL_NAME, v, key) for v in versions}
    print_json({"model": names.MODEL_NAME, "signed": {str(v): digest for v, digest in signed.items()}})


@models_app.command("compare")
@errors_to_exit
def models_compare(
    feature_version: Annotated[int | None, typer.Option(help="Feature version to train on (default: active).")] = None,
    models: Annotated[str, typer.Option(help="Comma-separated model types.")] = "hgb,logreg,rf,knn",
    experiment: Annotated[
        str | None,
        typer.Option(
            help="Also log each run (never registered) to this MLflow experiment, with permutation importance."
        ),
    ] = None,
) -> None:
    """Train every model type with its default config on one feature version and print the comparison table with the
    baselines, both evaluation modes, in markdown. Nothing is registered."""
    from streamml.models.report import markdown_table
    from streamml.models.train import compare

    settings = load_settings()
    version = feature_store().active_version(feature_version)
    types = [name.strip() for name in models.split(",") if name.strip()]
    with console.status(f"training {', '.join(types)} on feature version {version}"):
        rows = compare(settings, version, types, experiment=experiment)
    console.print(markdown_table(rows), soft_wrap=True, highlight=False)


@models_app.command("families")
@errors_to_exit
def models_families(
    samples: Annotated[int, typer.Option(min=10, help="Bootstrap resamples of the stream users.")] = 200,
    out: Annotated[str | None, typer.Option(help="Also write the figures to this JSON file.")] = None,
) -> None:
    """What each feature family earns on MovieLens (STREAMML_MOVIELENS_DIR or the cached download): validation AUC
    inside history, stream AUC with a bootstrap interval over users, the paired gain, the freshness curve. Trains the
    default model once per family set, in-process (a few minutes); prints markdown."""
    import json

    from streamml.data import movielens
    from streamml.data.ingest import source_dir
    from streamml.models.families import family_table, markdown
    from streamml.models.pyfunc import like_column
    from streamml.models.train import ModelConfig, fit

    settings = load_settings()
    ratings, movies = movielens.load(source_dir(settings))
    config = ModelConfig()

    def fitted(features: Any, labels: Any) -> Any:
        estimator = fit(config, features, labels)
        return lambda matrix: estimator.predict_proba(matrix)[:, like_column(estimator)]

    with console.status("replaying the ratings and training one model per family set"):
        table = family_table(ratings, movies, fitted, samples=samples)
    if out:
        Path(out).write_text(json.dumps(table, indent=2) + "\n")
    console.print(markdown(table), soft_wrap=True, highlight=False)


@errors_to_exit
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

    params: dict[str, object] = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--param takes NAME=VALUE, got {item!r}")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    settings = load_settings()
    version = feature_store().active_version(feature_version)
    with console.status(f"training {model_type} on feature version {version}"):
        result = tasks.train(settings, version, {"model_type": model_type, model_type: params})
    print_json(result)
    if promote:
        print_json(tasks.promote(settings, int(result["version"])))
