"""Spark sessions wired to MinIO over s3a:// (hadoop-aws jars from the setup cache)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from streamml.config import Settings
from streamml.errors import ConfigError, StreamMLError
from streamml.paths import StackPaths

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)


S3A_SECRET = "spark.hadoop.fs.s3a.secret.key"  # noqa: S105 - the option's name
SPARK_AUTH_SECRET = "spark.authenticate.secret"  # noqa: S105 - the option's name


def s3a_conf(settings: Settings) -> dict[str, str]:
    """Spark/Hadoop options that point s3a:// at MinIO with path-style access."""
    m = settings.minio
    return {
        "spark.hadoop.fs.s3a.endpoint": m.endpoint_url,
        "spark.hadoop.fs.s3a.access.key": m.access_key,
        S3A_SECRET: m.secret_key.get_secret_value(),
        "spark.hadoop.fs.s3a.endpoint.region": m.region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.committer.name": "magic",
        "spark.hadoop.fs.s3a.attempts.maximum": "3",
        "spark.hadoop.fs.s3a.retry.limit": "3",
    }


def cluster_conf(settings: Settings, master: str) -> dict[str, str]:
    """Options of a session on ``master``: a standalone cluster (``spark://``) authenticates with the shared secret
    (set in the driver's own conf, never on a command line; the daemons hold it in ``_SPARK_AUTH_SECRET``)."""
    if not master.startswith("spark://"):
        return {}
    secret = settings.spark.auth_secret.get_secret_value()
    if not secret:
        raise ConfigError(
            f"{master} needs STREAMML_SPARK__AUTH_SECRET (spark.authenticate); ./run.sh setup generates it"
        )
    return {
        "spark.authenticate": "true",
        SPARK_AUTH_SECRET: secret,
        "spark.executor.memory": settings.spark.executor_memory,
    }


def spark_jars(settings: Settings) -> list[str]:
    jars_dir = StackPaths.from_settings(settings).spark_jars
    jars = sorted(str(p) for p in jars_dir.glob("*.jar"))
    if not any("hadoop-aws" in j for j in jars):
        raise ConfigError(f"hadoop-aws jars are missing from {jars_dir}; run ./run.sh setup")
    return jars


def driver_address(settings: Settings) -> str:
    """Where a Spark driver binds and what it advertises to executors (SPARK_LOCAL_IP, spark.driver.bindAddress).

    The local stack keeps Spark on loopback. In docker mode the driver runs in a container (the Airflow scheduler):
    its host name resolves to its address on the Compose network, so executors on the standalone cluster
    (``spark://spark-master:7077``) can call it back; with ``local[*]`` nothing changes but the interface.
    """
    return "127.0.0.1" if settings.mode == "local" else socket.gethostname()


def submit_argv(settings: Settings, script: Path, *args: str) -> list[str]:
    """``spark-submit`` of an entry script on ``settings.spark.master`` with the S3A jars and MinIO options."""
    argv = [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master", settings.spark.master,
        "--driver-memory", settings.spark.driver_memory,
        "--jars", ",".join(spark_jars(settings)),
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.log.level=WARN",
        "--conf", "spark.sql.session.timeZone=UTC",
    ]  # fmt: skip
    for key, value in s3a_conf(settings).items():
        if key != S3A_SECRET:  # never on a command line (ps shows it): the driver sets it from its own settings
            argv += ["--conf", f"{key}={value}"]
    return [*argv, str(script), *args]


def run_submit(settings: Settings, script: Path, *args: str) -> None:
    """Run a Spark entry script with spark-submit; raise with the tail of its log on failure."""
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": driver_address(settings),
        # the driver's own settings pick the session's master: the one given to spark-submit
        "STREAMML_SPARK__MASTER": settings.spark.master,
    }
    done = subprocess.run(  # noqa: S603 - argv built from settings and our own script path
        submit_argv(settings, script, *args), env=env, capture_output=True, text=True, check=False
    )
    for line in done.stderr.splitlines()[-50:]:
        logger.info("spark: %s", line)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-30:])
        raise StreamMLError(f"spark-submit {script.name} failed with exit code {done.returncode}:\n{tail}")


def create_session(settings: Settings, app_name: str, master: str | None = None) -> SparkSession:
    """A SparkSession on ``settings.spark.master`` (or ``master``) that reads and writes MinIO via s3a://."""
    from pyspark.sql import SparkSession

    jars = spark_jars(settings)
    master = master or settings.spark.master
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", driver_address(settings))
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master)
        .config("spark.jars", ",".join(jars))
        .config("spark.driver.memory", settings.spark.driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.log.level", "WARN")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.driver.bindAddress", driver_address(settings))
    )
    for key, value in {**s3a_conf(settings), **cluster_conf(settings, master)}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    # A session created in a JVM that already ran one may not apply spark.hadoop.* builder options; set them on the
    # context's Hadoop configuration directly so s3a:// always reaches this MinIO.
    hadoop = session.sparkContext._jsc.hadoopConfiguration()
    for key, value in s3a_conf(settings).items():
        hadoop.set(key.removeprefix("spark.hadoop."), value)
    return session
