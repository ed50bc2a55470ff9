"""MLflow's accounts: the tracking server runs MLflow's basic-auth app, so every request signs in.

A signed-in account may read everything (``default_permission = READ``); only these may write:

- ``admin`` (``STREAMML_MLFLOW__PASSWORD``; the CLI, the tests, this setup): everything;
- ``airflow`` (the DAGs' tasks): log runs to the experiment, and register, tag and alias versions of the model;
- ``api`` (promote and roll back): move the model's aliases and tag its versions.

The scorer and the metrics aggregator only read. Unauthenticated requests get 401; a signed-in account that may not
write gets 403. :func:`ensure_accounts` runs at every ``stack up`` once the server answers (Compose: the
mlflow-init job): it writes every account's password from the settings straight into the auth store (so a password
rotated in .env, the admin's included, takes effect at once) and grants the permissions above.
"""

from __future__ import annotations

import logging
from pathlib import Path

from streamml import names
from streamml.config import MlflowSettings

logger = logging.getLogger(__name__)

EDIT = "EDIT"
AUTH_CACHE_SECONDS = 60
# account -> (may edit the experiment, may edit the registered model)
WRITERS: dict[str, tuple[bool, bool]] = {"airflow": (True, True), "api": (False, True)}


def auth_config(database_uri: str) -> str:
    """The basic-auth app's config file (MLFLOW_AUTH_CONFIG_PATH); it holds no secret: the admin's password comes from
    the environment the first time, and from :func:`ensure_accounts` after that."""
    return "\n".join(
        [
            "[mlflow]",
            "default_permission = READ",
            f"database_uri = {database_uri}",
            f"admin_username = {names.MLFLOW_ADMIN}",
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
            "grant_default_workspace_access = false",
            # Each sign-in costs a password hash check (PBKDF2, about 0.5 s of a core here), and the scorer, the API
            # and the aggregator read the aliases every second: cache a checked (user, password) for a minute. A
            # password replaced by ensure_accounts is still accepted for at most that long.
            f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}",
            "",
        ]
    )


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path}"


def ensure_accounts(mlflow: MlflowSettings, database_uri: str, model_name: str = names.MODEL_NAME) -> None:
    """Make the auth store's accounts and grants those of the settings and :data:`WRITERS` (idempotent). ``mlflow``
    is the admin's settings with every program's password; the server must be up (the experiment is created
    through it when missing)."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    from streamml.stores.mlflow_client import client, mlflow_errors

    mlflow.require_programs()
    store = SqlAlchemyStore()
    store.init_db(database_uri)
    accounts = {names.MLFLOW_ADMIN: mlflow.password, **mlflow.program_passwords}
    for name, password in accounts.items():
        if store.has_user(name):
            store.update_user(name, password=password.get_secret_value(), is_admin=name == names.MLFLOW_ADMIN)
        else:
            store.create_user(name, password.get_secret_value(), is_admin=name == names.MLFLOW_ADMIN)
    with mlflow_errors(f"create the experiment {mlflow.experiment}"):
        registry = client(mlflow)
        found = registry.get_experiment_by_name(mlflow.experiment)
        experiment_id = found.experiment_id if found else registry.create_experiment(mlflow.experiment)
    for account, (experiment, model) in WRITERS.items():
        if experiment:
            _grant(store, "experiment", experiment_id, account)
        if model:
            _grant(store, "registered_model", model_name, account)
    logger.info("mlflow accounts=%s writers=%s", ",".join(accounts), ",".join(WRITERS))


def _grant(store: object, kind: str, resource: str, account: str) -> None:
    """EDIT on one experiment (by id) or registered model (by name) for ``account``, whatever it held."""
    from mlflow.exceptions import MlflowException

    try:
        getattr(store, f"get_{kind}_permission")(resource, account)
    except MlflowException:  # none yet
        getattr(store, f"create_{kind}_permission")(resource, account, EDIT)
    else:
        getattr(store, f"update_{kind}_permission")(resource, account, EDIT)
