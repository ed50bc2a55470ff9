from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamml import names
from streamml.data.movielens import synthesize

TEST_SECRETS = {
    name: f"unit-test-{name.lower().replace('_', '-')}"
    for name in (
        "STREAMML_KAFKA__PASSWORD",
        *(f"STREAMML_KAFKA__PROGRAM_PASSWORDS__{account.upper()}" for account in names.KAFKA_PROGRAM_ACCOUNTS),
        "STREAMML_MLFLOW__PASSWORD",
        "STREAMML_MLFLOW__SERVER_SECRET_KEY",
        *(f"STREAMML_MLFLOW__PROGRAM_PASSWORDS__{account.upper()}" for account in names.MLFLOW_PROGRAM_ACCOUNTS),
        "STREAMML_REDIS__PASSWORD",
        *(f"STREAMML_REDIS__PROGRAM_PASSWORDS__{account.upper()}" for account in names.REDIS_PROGRAM_ACCOUNTS),
        "STREAMML_MINIO__SECRET_KEY",
        *(f"STREAMML_MINIO__PROGRAM_SECRET_KEYS__{account.upper()}" for account in names.MINIO_PROGRAM_ACCOUNTS),
        "STREAMML_MLFLOW__SIGNING_KEY",
        "STREAMML_AIRFLOW__ADMIN_PASSWORD",
        "STREAMML_AIRFLOW__JWT_SECRET",
        "STREAMML_API__API_KEY",
        "STREAMML_DASHBOARD__ADMIN_PASSWORD",
        "STREAMML_SPARK__AUTH_SECRET",
    )
}


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings refuses the published change-me defaults, so every unit test has secrets (its own, unless run.sh
    exported the generated .env)."""
    for name, value in TEST_SECRETS.items():
        if not os.environ.get(name):
            monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def movielens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MovieLens CSVs: $STREAMML_MOVIELENS_DIR when set, else a small synthetic set written to a temp dir."""
    if configured := os.environ.get("STREAMML_MOVIELENS_DIR"):
        return Path(configured)
    directory = tmp_path_factory.mktemp("movielens")
    ratings, movies = synthesize(n_ratings=6000, n_users=150, n_movies=700, seed=11)
    ratings.to_csv(directory / "ratings.csv", index=False)
    movies.to_csv(directory / "movies.csv", index=False)
    return directory
