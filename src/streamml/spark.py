"""Spark sessions wired to MinIO over s3a:// (hadoop-aws jars from the setup cache)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from streamml.config import Settings
from streamml.errors import ConfigError
from streamml.runtime.programs import StackPaths

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def s3a_conf(settings: Settings) -> dict[str, str]:
    """Spark/Hadoop options that point s3a:// at MinIO with path-style access."""
    m = settings.minio
    return {
        "spark.hadoop.fs.s3a.endpoint": m.endpoint_url,
        "spark.hadoop.fs.s3a.access.key": m.access_key,
        "spark.hadoop.fs.s3a.secret.key": m.secret_key.get_secret_value(),
        "spark.hadoop.fs.s3a.endpoint.region": m.region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.committer.name": "magic",
        "spark.hadoop.fs.s3a.attempts.maximum": "3",
        "spark.hadoop.fs.s3a.retry.limit": "3",
    }


def create_session(settings: Settings, app_name: str, master: str | None = None) -> SparkSession:
    """A SparkSession on ``settings.spark.master`` (or ``master``) that reads and writes MinIO via s3a://."""
    from pyspark.sql import SparkSession

    jars_dir = StackPaths.from_settings(settings).spark_jars
    jars = sorted(str(p) for p in jars_dir.glob("*.jar"))
    if not any("hadoop-aws" in j for j in jars):
        raise ConfigError(f"hadoop-aws jars are missing from {jars_dir}; run ./run.sh setup")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master or settings.spark.master)
        .config("spark.jars", ",".join(jars))
        .config("spark.driver.memory", settings.spark.driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.driver.bindAddress", "127.0.0.1")
    )
    for key, value in s3a_conf(settings).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
