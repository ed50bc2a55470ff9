"""The MinIO users' bucket policies and MLflow's auth config (the integration tests try both on the servers)."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from streamml import names
from streamml.config import Settings
from streamml.paths import StackPaths
from streamml.runtime.programs import all_programs
from streamml.stores.minio_auth import GRANTS, policy
from streamml.stores.mlflow_auth import AUTH_CACHE_SECONDS, WRITERS, auth_config


def resources(account: str, action: str) -> set[str]:
    return {r for s in policy(account)["Statement"] if action in s["Action"] for r in s["Resource"]}


def test_each_minio_user_reaches_only_its_buckets() -> None:
    assert resources("mlflow", "s3:PutObject") == {f"arn:aws:s3:::{names.BUCKET_MLFLOW}/*"}
    assert resources("airflow", "s3:GetObject") == {
        f"arn:aws:s3:::{names.BUCKET_RAW}/*",
        f"arn:aws:s3:::{names.BUCKET_FEATURES}/*",
    }
    assert resources("archive", "s3:DeleteObject") == {f"arn:aws:s3:::{names.BUCKET_FEATURES}/{names.ARCHIVE_PREFIX}*"}
    listing = [s for s in policy("archive")["Statement"] if "s3:ListBucket" in s["Action"]]
    assert [s["Condition"]["StringLike"]["s3:prefix"] for s in listing] == [[f"{names.ARCHIVE_PREFIX}*"]]
    for account in GRANTS:
        actions = {a for s in policy(account)["Statement"] for a in s["Action"]}
        assert not actions & {"s3:*", "s3:CreateBucket", "s3:DeleteBucket", "s3:PutBucketPolicy", "admin:*"}, account
        assert all(s["Effect"] == "Allow" for s in policy(account)["Statement"])


def test_mlflow_auth_reads_for_everyone_and_writes_for_two() -> None:
    config = configparser.ConfigParser()
    config.read_string(auth_config("sqlite:////tmp/auth.db"))
    assert config["mlflow"]["default_permission"] == "READ"
    assert config["mlflow"]["admin_username"] == names.MLFLOW_ADMIN
    assert int(config["mlflow"]["auth_cache_ttl_seconds"]) == AUTH_CACHE_SECONDS > 0
    assert "password" not in auth_config("sqlite:////tmp/auth.db"), "the admin's password comes from the environment"
    assert set(WRITERS) == {"airflow", "api"}


@pytest.mark.parametrize(
    ("program", "kafka", "mlflow", "minio"),
    [
        ("scorer", "scorer", "scorer", None),
        ("metrics-aggregator", "aggregator", "aggregator", None),
        ("archive", "archive", None, "archive"),
        ("api", "api", "api", None),
        ("dashboard", "dashboard", None, None),
        ("airflow-scheduler", "airflow", "airflow", "airflow"),
    ],
)
def test_each_program_gets_only_its_own_accounts(
    tmp_path: Path, program: str, kafka: str, mlflow: str | None, minio: str | None
) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    env = next(p.env for p in all_programs(settings, StackPaths.from_settings(settings, tmp_path)) if p.name == program)
    assert env.get("STREAMML_KAFKA__USER") == kafka
    assert env.get("STREAMML_MLFLOW__USER") == mlflow
    assert env.get("STREAMML_MINIO__ACCESS_KEY") == minio
    admins = (settings.kafka.password, settings.mlflow.password, settings.minio.secret_key)
    assert not {a.get_secret_value() for a in admins} & set(env.values()), "no admin secret in a program's env"
