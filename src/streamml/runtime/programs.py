"""The programs of the local stack: what runs, in which order, with which environment.

Each :class:`Program` becomes one ``[program:x]`` section of the generated supervisord config. Infrastructure
programs come first; the platform's own programs (scorer, feature updater, metrics aggregator, feedback archive, API,
dashboard) are added to :func:`platform_programs` as they are built, one entry each.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from streamml import names
from streamml.config import Settings
from streamml.errors import ConfigError
from streamml.paths import DAGS_DIR, StackPaths
from streamml.runtime.launch import mlflow_auth_config_path, redis_config_path


@dataclass(frozen=True)
class Program:
    """One supervised process of the local stack."""

    name: str
    command: list[str]
    service: str  # the health-check name this program belongs to (several airflow programs share "airflow")
    stage: int  # start order: every program of stage n is healthy before stage n+1 starts
    ports: tuple[tuple[int, str], ...] = ()  # (port it binds, the variable that changes it), checked free before start
    env: dict[str, str] = field(default_factory=dict)
    stop_wait_seconds: int = 20
    # False: a job that `stack up` does not start and that is not restarted once it exits 0 (the replayer);
    # started on demand with `streamml stack start NAME`.
    long_running: bool = True


def venv_bin(name: str) -> str:
    """Path of a console script installed beside the running interpreter."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def accounts_env(
    settings: Settings, program: str, mlflow: str | None = None, minio: str | None = None
) -> dict[str, str]:
    """The accounts a program signs in as, instead of .env's admin: its own on Kafka (streamml.streaming.acl) and
    Redis (streamml.stores.redis_acl) and, for the programs that use them, MLflow's (streamml.stores.mlflow_auth) and
    MinIO's (streamml.stores.minio_auth)."""
    env = settings.kafka.account_env(program) | settings.redis.account_env(program)
    env |= settings.mlflow.account_env(mlflow) if mlflow else {}
    env |= settings.minio.account_env(minio) if minio else {}
    return env


def airflow_env(settings: Settings, paths: StackPaths) -> dict[str, str]:
    """Environment shared by every Airflow process (and by the CLI calls that migrate its database); its tasks sign
    in to Kafka as the airflow account."""
    af = settings.airflow
    home = paths.airflow_home
    return {
        **accounts_env(settings, "airflow", "airflow", "airflow"),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(paths.root / DAGS_DIR),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__PARALLELISM": str(af.parallelism),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{af.admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{af.base_url}/execution/",
        "AIRFLOW__API__HOST": af.host,
        "AIRFLOW__API__PORT": str(af.port),
        "AIRFLOW__API__BASE_URL": af.base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": af.jwt_secret.get_secret_value(),
        "AIRFLOW__API_AUTH__JWT_SECRET": af.jwt_secret.get_secret_value(),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(paths.logs / "airflow-tasks"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "NO_PROXY": "*",
    }


def infrastructure_programs(settings: Settings, paths: StackPaths) -> list[Program]:
    """Kafka, Redis, MinIO, MLflow and Airflow as real servers."""
    py = sys.executable
    k, r, m, ml, af = settings.kafka, settings.redis, settings.minio, settings.mlflow, settings.airflow
    airflow = venv_bin("airflow")
    aenv = airflow_env(settings, paths)
    return [
        Program(
            "kafka",
            [py, "-m", "streamml.runtime.launch", "kafka"],
            service="kafka",
            stage=0,
            ports=((k.port, "STREAMML_KAFKA__PORT"), (k.controller_port, "STREAMML_KAFKA__CONTROLLER_PORT")),
            stop_wait_seconds=30,
        ),
        Program(
            "redis",
            [shutil.which("redis-server") or "redis-server", str(redis_config_path(paths))],  # rendered by the stack
            service="redis",
            stage=0,
            ports=((r.port, "STREAMML_REDIS__PORT"),),
        ),
        Program(
            "minio",
            [
                str(paths.minio_binary),
                "server",
                str(paths.state / "minio"),
                "--address",
                f"{m.host}:{m.port}",
                "--console-address",
                f"{m.host}:{m.console_port}",
                "--quiet",
            ],
            service="minio",
            stage=0,
            ports=((m.port, "STREAMML_MINIO__PORT"), (m.console_port, "STREAMML_MINIO__CONSOLE_PORT")),
            env={
                "MINIO_ROOT_USER": m.access_key,
                "MINIO_ROOT_PASSWORD": m.secret_key.get_secret_value(),
                "MINIO_UPDATE": "off",
                "MINIO_BROWSER_REDIRECT": "off",
            },
        ),
        Program(
            "mlflow",
            [
                venv_bin("mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{paths.state / 'mlflow' / 'mlflow.db'}",
                "--artifacts-destination",
                "s3://mlflow",
                "--host",
                ml.host,
                "--port",
                str(ml.port),
                "--workers",
                "1",
                "--app-name",
                "basic-auth",
                "--allowed-hosts",
                f"{ml.host}:{ml.port},localhost:{ml.port},127.0.0.1:{ml.port},mlflow:{ml.port}",
            ],
            service="mlflow",
            stage=1,
            ports=((ml.port, "STREAMML_MLFLOW__PORT"),),
            env={
                **settings.model_copy(update={"minio": m.as_account("mlflow")}).s3_env(),  # its bucket only
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                # the basic-auth app (streamml.stores.mlflow_auth): its config, the admin's first password, the
                # secret of its forms
                "MLFLOW_AUTH_CONFIG_PATH": str(mlflow_auth_config_path(paths)),
                "MLFLOW_AUTH_ADMIN_PASSWORD": ml.password.get_secret_value(),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": ml.server_secret_key.get_secret_value(),
            },
        ),
        Program(
            "airflow-api-server",
            [airflow, "api-server", "--host", af.host, "--port", str(af.port), "--workers", "1"],
            service="airflow",
            stage=1,
            ports=((af.port, "STREAMML_AIRFLOW__PORT"),),
            env=aenv,
        ),
        Program("airflow-scheduler", [airflow, "scheduler"], service="airflow", stage=1, env=aenv),
        Program("airflow-dag-processor", [airflow, "dag-processor"], service="airflow", stage=1, env=aenv),
        Program("airflow-triggerer", [airflow, "triggerer"], service="airflow", stage=1, env=aenv),
        *spark_cluster_programs(settings, paths),
    ]


def pyspark_home() -> Path:
    """pyspark's own directory: a Spark home (bin/spark-class, jars/) without importing pyspark."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ConfigError("pyspark is not installed in this environment; run ./run.sh setup")
    return Path(spec.origin).parent


def spark_cluster_programs(settings: Settings, paths: StackPaths) -> list[Program]:
    """A Spark standalone master and one worker from pyspark's own ``spark-class``, on loopback. Jobs run on it when
    ``STREAMML_SPARK__MASTER`` is ``spark.cluster_url``. Only holders of the shared secret register (workers) or
    submit (drivers): ``spark.authenticate``, with the secret in the daemons' environment, not on a command line;
    the web UIs show but cannot kill."""
    sp = settings.spark
    spark_home = pyspark_home()
    spark_class = str(spark_home / "bin" / "spark-class")
    secured = "-Dspark.authenticate=true -Dspark.ui.killEnabled=false"
    daemon = {
        "SPARK_HOME": str(spark_home),  # else spark-class looks for pyspark with whichever python is first on PATH
        "SPARK_LOCAL_IP": sp.host,
        "SPARK_DAEMON_MEMORY": "256m",
        "_SPARK_AUTH_SECRET": sp.auth_secret.get_secret_value(),
    }
    return [
        Program(
            "spark-master",
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                sp.host,
                "--port",
                str(sp.master_port),
                "--webui-port",
                str(sp.master_ui_port),
            ],  # fmt: skip
            service="spark",
            stage=0,
            # the web UI first: the port `stack status` shows and Compose publishes
            ports=(
                (sp.master_ui_port, "STREAMML_SPARK__MASTER_UI_PORT"),
                (sp.master_port, "STREAMML_SPARK__MASTER_PORT"),
            ),
            # no REST submission server (port 6066): it takes jobs without the shared secret
            env={**daemon, "SPARK_MASTER_OPTS": f"{secured} -Dspark.master.rest.enabled=false"},
        ),
        Program(
            "spark-worker",
            [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                sp.host,
                "--webui-port",
                str(sp.worker_ui_port),
                "--cores",
                str(sp.worker_cores),
                "--memory",
                sp.worker_memory,
                "--work-dir",
                str(paths.state / "spark" / "work"),
                sp.cluster_url,
            ],  # fmt: skip
            service="spark",
            stage=0,
            ports=((sp.worker_ui_port, "STREAMML_SPARK__WORKER_UI_PORT"),),
            # executors run the venv's python; an application's files are removed once it ends
            env={
                **daemon,
                "SPARK_WORKER_OPTS": f"{secured} -Dspark.worker.cleanup.enabled=true",
                "PYSPARK_PYTHON": sys.executable,
            },
        ),
    ]


def scorer_programs(settings: Settings, streamml: str, env: dict[str, str]) -> list[Program]:
    """``settings.scorer.replicas`` scorers in one consumer group: ``scorer``, then ``scorer-1``, ``scorer-2``, ...,
    each with a metrics port of its own. One program per replica rather than supervisord's ``numprocs``: supervisord
    restarts a whole group when its ``numprocs`` changes, while separate programs let ``stack up`` start or stop only
    the replicas added or removed (the others keep their partitions)."""
    s = settings.scorer
    programs = []
    for i in range(s.replicas):
        port, variable = (
            (s.metrics_port, "STREAMML_SCORER__METRICS_PORT")
            if i == 0
            else (s.replica_metrics_port + i - 1, "STREAMML_SCORER__REPLICA_METRICS_PORT")
        )
        programs.append(
            Program(
                "scorer" if i == 0 else f"scorer-{i}",
                [streamml, "score"],
                service="scorer",
                stage=2,
                ports=((port, variable),),
                env={**env, "STREAMML_SCORER__METRICS_PORT": str(port)},
            )
        )
    return programs


def platform_programs(settings: Settings, paths: StackPaths) -> list[Program]:  # noqa: ARG001
    """The platform's own programs (stage 2); each has its service in docker-compose.yml
    (tests/unit/test_compose.py checks the two match)."""
    streamml = venv_bin("streamml")
    spark_env = {"PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    return [
        *scorer_programs(settings, streamml, {**spark_env, **accounts_env(settings, "scorer", "scorer")}),
        Program(
            "feature-updater",
            [streamml, "update-features"],
            service="feature-updater",
            stage=2,
            env=accounts_env(settings, "updater"),
        ),
        Program(
            "metrics-aggregator",
            [streamml, "metrics"],
            service="metrics-aggregator",
            stage=2,
            ports=((settings.aggregator.metrics_port, "STREAMML_AGGREGATOR__METRICS_PORT"),),
            env=accounts_env(settings, "aggregator", "aggregator"),
        ),
        Program(
            names.PROGRAM_ARCHIVE,
            [streamml, "archive"],
            service=names.PROGRAM_ARCHIVE,
            stage=2,
            # SIGTERM takes effect when the current consume call returns (up to flush_seconds), then the batch is
            # written and committed before the process exits.
            stop_wait_seconds=int(settings.archive.flush_seconds) + 30,
            env=accounts_env(settings, "archive", minio="archive"),
        ),
        Program(
            "api",
            [streamml, "api"],
            service="api",
            stage=2,
            ports=((settings.api.port, "STREAMML_API__PORT"),),
            env=accounts_env(settings, "api", "api"),
        ),
        Program(
            "dashboard",
            [streamml, "dashboard"],
            service="dashboard",
            stage=2,
            ports=((settings.dashboard.port, "STREAMML_DASHBOARD__PORT"),),
            env=accounts_env(settings, "dashboard"),
        ),
        Program(
            "replayer",
            [streamml, "replay"],
            service="replayer",
            stage=2,
            long_running=False,
            env=accounts_env(settings, "replayer"),
        ),
    ]


def all_programs(settings: Settings, paths: StackPaths) -> list[Program]:
    return infrastructure_programs(settings, paths) + platform_programs(settings, paths)
