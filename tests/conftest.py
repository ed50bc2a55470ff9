"""Shared fixtures. Service fixtures connect to the running local stack; a service that does not answer fails the
test, never skips it: ./run.sh test starts the stack first."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamml import names
from streamml.config import Settings
from streamml.paths import StackPaths
from streamml.runtime import health

# Spark workers must use this interpreter, and bind loopback only.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# The first SparkSession of the test process starts the JVM; give it the S3A jars from the start, because
# spark.jars set by a later session cannot reach the Hadoop classloader of a running JVM.
_settings = Settings()
_jars = sorted(StackPaths.from_settings(_settings).spark_jars.glob("*.jar"))
if _jars:
    os.environ.setdefault("PYSPARK_SUBMIT_ARGS", f"--jars {','.join(map(str, _jars))} pyspark-shell")
# MLflow's client signs in from the environment only: the tests (and the scorers they start) as the admin.
os.environ.update(_settings.mlflow.client_env())


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def require(settings: Settings) -> Callable[[str], None]:
    def _require(service: str) -> None:
        result = health.check(service, settings, timeout=10.0)
        if not result.ok:
            pytest.fail(f"{service} is not reachable ({result.detail}); start the stack with ./run.sh up")

    return _require


@pytest.fixture
def uid() -> str:
    """A per-test suffix for topics, keys and prefixes, so tests never see each other's data."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    value = os.environ.get("STREAMML_MOVIELENS_DIR")
    if not value:
        pytest.fail("set STREAMML_MOVIELENS_DIR to a MovieLens directory (CI uses ../shared/datasets/ml-latest-small)")
    return Path(value)


@pytest.fixture(scope="session")
def training_run(settings: Settings, require: Callable[[str], None], movielens_dir: Path) -> dict[str, Any]:
    """One movielens_training run through Airflow on the running stack, shared by every test that needs its
    features or its champion: {"status", "manifest"}."""
    import redis

    from streamml.airflow_client import trigger_and_wait
    from streamml.features.batch import read_manifest

    for service in ("airflow", "minio", "redis", "mlflow"):
        require(service)
    status = trigger_and_wait(settings.airflow, names.DAG_TRAINING, {"movielens_dir": str(movielens_dir)}, timeout=1200)
    assert status.state == "success", status.tasks
    version = int(redis.Redis.from_url(settings.redis.url).get(names.FEATURE_VERSION_CURRENT) or 0)
    return {"status": status, "manifest": read_manifest(settings, version)}


@pytest.fixture
def redis_db(settings: Settings, require: Callable[[str], None]) -> Any:
    """A Redis client on database 9, flushed before and after, so the platform's keys in database 0 are never
    touched. (The benchmarks use 14 and 15.)"""
    import redis

    require("redis")
    client = redis.Redis(
        host=settings.redis.host, port=settings.redis.port, db=9, password=settings.redis.password.get_secret_value()
    )
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
