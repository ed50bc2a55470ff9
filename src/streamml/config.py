"""Typed settings for every streamml process.

Values come from the environment (``STREAMML_`` prefix, ``__`` between a section and its field) and from ``.env``.
Nothing here is read at import time: entry points call :func:`get_settings`, library code receives a section.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamml import names
from streamml.accounts import Accounts, Section, UserAccounts

DEFAULT_SECRET_PREFIX = "change-me"  # noqa: S105 - the marker of default secrets, not a secret


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to anything


class KafkaSettings(UserAccounts):
    host: str = Field("127.0.0.1", description="Host the broker listens on and clients connect to.")
    port: int = Field(9092, description="Client listener port of the broker (SASL/SCRAM-SHA-512).")
    controller_port: int = Field(9093, description="KRaft controller listener port (local stack only).")
    heap: str = Field("768m", description="JVM heap (-Xmx) of the local broker.")
    partitions: int = Field(3, ge=1, description="Partitions of each platform topic.")
    retention_ms: int = Field(7 * 24 * 3600 * 1000, description="Retention of the platform topics, in milliseconds.")
    ACCOUNTS: ClassVar[tuple[str, ...]] = names.KAFKA_PROGRAM_ACCOUNTS

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"


class RedisSettings(UserAccounts):
    host: str = Field("127.0.0.1", description="Redis host.")
    port: int = Field(6379, description="Redis port.")
    db: int = Field(0, ge=0, description="Redis database number.")
    user: str = Field(
        names.REDIS_ADMIN,
        pattern=r"^[a-z][a-z0-9-]{0,31}$",
        description="The ACL user this process signs in as: Redis's own `default` (the admin: CLI, tests, the "
        "stack's setup) or a program's, with only its keys (streamml.stores.redis_acl).",
    )
    ACCOUNTS: ClassVar[tuple[str, ...]] = names.REDIS_PROGRAM_ACCOUNTS

    @property
    def url(self) -> str:
        """The client URL, user and password included (a secret: never log it; :attr:`address` is for messages)."""
        password = quote(self.password.get_secret_value(), safe="")
        return f"redis://{self.user}:{password}@{self.host}:{self.port}/{self.db}"

    @property
    def address(self) -> str:
        return f"redis://{self.user}@{self.host}:{self.port}/{self.db}"


class MinioSettings(Accounts):
    host: str = Field("127.0.0.1", description="MinIO host.")
    port: int = Field(9000, description="MinIO S3 API port.")
    console_port: int = Field(9001, description="MinIO web console port.")
    access_key: str = Field(
        "streamml", description="The S3 access key this process signs in with; in .env MinIO's root user."
    )
    secret_key: SecretStr = Field(
        SecretStr(""),
        description="Secret key of `access_key` (8+ chars); in .env MinIO's root password. Empty: no MinIO account "
        "(a Compose service that does not use MinIO).",
    )
    program_secret_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Secret keys of the programs' MinIO users (STREAMML_MINIO__PROGRAM_SECRET_KEYS__ARCHIVE, ...), "
        "each with the bucket policy of streamml.stores.minio_auth; the access key is the program's name.",
    )
    region: str = Field("us-east-1", description="Region name given to S3 clients.")
    ACCOUNTS: ClassVar[tuple[str, ...]] = names.MINIO_PROGRAM_ACCOUNTS
    FIELDS: ClassVar[tuple[str, str, str]] = ("access_key", "secret_key", "program_secret_keys")

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"


class MlflowSettings(UserAccounts):
    host: str = Field("127.0.0.1", description="MLflow tracking server host.")
    port: int = Field(5000, description="MLflow tracking server port.")
    experiment: str = Field("movielens-like", description="Experiment that training runs log to.")
    server_secret_key: SecretStr = Field(
        SecretStr(""),
        description="The tracking server's Flask secret key (CSRF of its sign-up form); the server's only.",
    )
    ACCOUNTS: ClassVar[tuple[str, ...]] = names.MLFLOW_PROGRAM_ACCOUNTS
    signing_key: SecretStr = Field(
        SecretStr("change-me-model-signing-key"),
        description="Key of the HMAC that registration puts on each model version and every loader checks before "
        "unpickling (streamml.models.integrity); never stored in MLflow.",
    )

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """The variables MLflow's client reads its credentials from (it has no other way to be given them)."""
        return {"MLFLOW_TRACKING_USERNAME": self.user, "MLFLOW_TRACKING_PASSWORD": self.password.get_secret_value()}


class AirflowSettings(Section):
    host: str = Field("127.0.0.1", description="Airflow API server host.")
    port: int = Field(8080, description="Airflow API server (UI and REST v2) port.")
    admin_user: str = Field("admin", description="Airflow admin login.")
    admin_password: SecretStr = Field(SecretStr("change-me-airflow"), description="Airflow admin password.")
    jwt_secret: SecretStr = Field(
        SecretStr("change-me-airflow-jwt-secret-0123456789"),
        description="Secret that signs Airflow's API and task JWTs; shared by all Airflow processes.",
    )
    parallelism: int = Field(4, ge=1, description="Airflow core parallelism (task slots).")

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


class SparkSettings(Section):
    master: str = Field(
        "local[*]",
        description="Spark master URL given to spark-submit and sessions: local[*] runs Spark inside the driver; "
        "spark://127.0.0.1:7077 is the local stack's standalone cluster (spark-master, spark-worker).",
    )
    driver_memory: str = Field("2g", description="Spark driver memory.")
    host: str = Field("127.0.0.1", description="Interface of the local standalone cluster's master and worker.")
    master_port: int = Field(7077, description="Port of the standalone master (spark://host:port).")
    master_ui_port: int = Field(8082, description="Web UI of the standalone master.")
    worker_ui_port: int = Field(8083, description="Web UI of the standalone worker.")
    worker_cores: int = Field(2, ge=1, description="Cores the standalone worker offers to executors.")
    worker_memory: str = Field("2g", description="Memory the standalone worker offers to executors.")
    executor_memory: str = Field("1g", description="Memory of each executor on a standalone cluster.")
    auth_secret: SecretStr = Field(
        SecretStr(""),
        description="Shared secret of a standalone cluster (spark.authenticate): its master, workers and every driver "
        "hold the same; a driver refuses a spark:// master without it. Unused with local[*].",
    )

    @property
    def cluster_url(self) -> str:
        """The master URL of the local stack's standalone cluster."""
        return f"spark://{self.host}:{self.master_port}"


class ApiSettings(Section):
    host: str = Field("127.0.0.1", description="FastAPI service host.")
    port: int = Field(8000, description="FastAPI service port.")
    api_key: SecretStr = Field(SecretStr("change-me-api-key"), description="Key required by mutating API endpoints.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body accepted (413 above it).")
    max_streams: int = Field(8, ge=1, description="Event streams (/pipelines/runs/{id}/events) open at once.")
    trigger_interval_seconds: float = Field(10.0, ge=0, description="Least time between two triggers of one DAG.")

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


class DashboardSettings(Section):
    host: str = Field("127.0.0.1", description="Streamlit dashboard host.")
    port: int = Field(8501, description="Streamlit dashboard port.")
    api_url: str = Field(
        "", description="Base URL of the API the dashboard calls (default: http://{api.host}:{api.port})."
    )
    admin_user: str = Field("admin", pattern=r"^[A-Za-z0-9_.@-]{1,64}$", description="Dashboard sign-in user.")
    admin_password: SecretStr = Field(
        SecretStr("change-me-dashboard"),
        description="Dashboard sign-in password: promote, roll back and trigger need it; reading does not.",
    )


class ScorerSettings(Section):
    metrics_port: int = Field(9464, description="Port of the scorer's Prometheus endpoint (/metrics).")
    replicas: int = Field(
        1, ge=1, le=32, description="Scorer processes of the local stack, one consumer group (scorer, scorer-1, ...)."
    )
    replica_metrics_port: int = Field(
        9470, description="Metrics port of scorer-1; scorer-2 serves on the next port, and so on."
    )
    batch_size: int = Field(500, ge=1, description="Messages per micro-batch.")
    model_poll_seconds: float = Field(
        1.0, gt=0, le=60, description="Seconds between two reads of the model aliases (scorer and API)."
    )
    shadow: bool = Field(
        True, description="Shadow-score @challenger beside @champion when they differ (to predictions.shadow.v1)."
    )


class AggregatorSettings(Section):
    metrics_port: int = Field(
        9465, description="Port of the metrics aggregator's Prometheus endpoint (live quality and freshness gauges)."
    )


class MonitorSettings(Section):
    """The drift and quality monitor (in the metrics aggregator) and its automatic retraining trigger."""

    window: int = Field(5000, ge=100, description="Served predictions behind the per-feature and score PSI.")
    quality_window: int = Field(1000, ge=50, description="Joined predictions per genre behind its calibration gap.")
    overall_window: int = Field(
        2000, ge=50, description="Joined predictions of all requests behind the overall calibration gap."
    )
    min_window: int = Field(
        5000,
        ge=1,
        description="No alarm before the window holds this many predictions (at most window; undrifted 2,000-windows "
        "reach score PSI 1.08 here, 5,000-windows 0.19).",
    )
    feature_psi: float = Field(0.25, gt=0, description="PSI at or above which a feature counts as drifted.")
    min_drifted_features: int = Field(
        0, ge=0, description="Alarm when this many features drift at once (0: off; see docs/operations.md)."
    )
    score_psi: float = Field(
        0.0,
        ge=0,
        description="Alarm when the score's PSI against the reference reaches this (0: off, shown only; an undrifted "
        "replay at 50/s reaches 0.35: the reference has no feedback delay).",
    )
    calibration_gap: float = Field(
        0.15, gt=0, le=1, description="Alarm when |live like rate - mean score| of a slice reaches this."
    )
    persist: int = Field(2, ge=1, description="Consecutive assessments a rule must hold before it alarms.")
    trigger: bool = Field(True, description="Trigger movielens_retrain through Airflow's REST API on an alarm.")
    cooldown_seconds: float = Field(3600.0, ge=0, description="At most one automatic retrain per this many seconds.")

    @model_validator(mode="after")
    def _window_can_fill(self) -> MonitorSettings:
        if self.min_window > self.window:
            raise ValueError(f"min_window ({self.min_window}) above window ({self.window}) would never alarm")
        return self


class RetrainSettings(Section):
    """movielens_retrain's promotion gate."""

    min_shadow_pairs: int = Field(
        2000,
        ge=1,
        description="Joined shadow-scored requests the online gate needs; fewer fall back to offline (over 1,000 "
        "requests the AUC difference spreads 10-40x wider than the margin: docs/models.md).",
    )
    min_shadow_class: int = Field(
        100,
        ge=0,
        description="Likes, and as many non-likes, the online gate needs among them: a window of a few likes (one "
        "user's bad evening) gives an AUC that decides nothing.",
    )
    shadow_wait_seconds: float = Field(
        600.0, ge=0, description="How long the gate waits for that shadow evidence after registering."
    )
    margin: float = Field(0.002, ge=0, description="AUC margin the challenger must beat the champion by.")


class ArchiveSettings(Section):
    flush_records: int = Field(
        2000,
        ge=1,
        le=100_000,
        description="Feedback records the archive consumes at most per write (one object per Kafka partition and "
        "hour sent); 2000 is about 30 s of the deploy's replay, within the archive's 192m under Compose.",
    )
    flush_seconds: float = Field(
        10.0,
        gt=0,
        le=45,
        description="Longest wait for a batch of feedback before the archive writes what it has (also how long a stop "
        "can take: the consume call ends first); at most 45 s, so the consume loop's heartbeat stays under 60 s.",
    )


class ReplaySettings(Section):
    rate: float = Field(50.0, gt=0, description="Requests per second of the replay that deploy starts (open loop).")
    feedback_delay: float = Field(1.0, ge=0, description="Seconds between a replayed request and its true rating.")
    again: bool = Field(
        False,
        description="Replay the stream period even when it was fully replayed on the active feature version already.",
    )


class Settings(BaseSettings):
    """All streamml settings; see ``.env.example`` for every variable."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMML_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    mode: Literal["local", "docker"] = Field("local", description="local: processes on this machine; docker: Compose.")
    allow_remote_bind: bool = Field(
        False,
        description="Local mode binds every server to loopback and refuses any other host unless this is true (the "
        "servers are then reachable from the network, protected only by their passwords).",
    )
    state_dir: Path = Field(Path(".local"), description="Data, logs and generated config of the local stack.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "streamml", description="Download/build cache (jars, MinIO binary), shared by clones."
    )
    movielens_dir: Path | None = Field(
        None, description="Directory holding MovieLens CSVs; when unset the dataset is downloaded."
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Kafka broker.")
    redis: RedisSettings = Field(default_factory=RedisSettings, description="Redis server.")
    minio: MinioSettings = Field(default_factory=MinioSettings, description="MinIO (S3) server.")
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings, description="MLflow tracking server.")
    airflow: AirflowSettings = Field(default_factory=AirflowSettings, description="Airflow servers.")
    spark: SparkSettings = Field(default_factory=SparkSettings, description="Spark.")
    api: ApiSettings = Field(default_factory=ApiSettings, description="FastAPI service.")
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings, description="Streamlit dashboard.")
    scorer: ScorerSettings = Field(default_factory=ScorerSettings, description="Scorer processes.")
    aggregator: AggregatorSettings = Field(default_factory=AggregatorSettings, description="Metrics aggregator.")
    replay: ReplaySettings = Field(default_factory=ReplaySettings, description="The replay that deploy starts.")
    monitor: MonitorSettings = Field(default_factory=MonitorSettings, description="Drift monitor and retrain trigger.")
    retrain: RetrainSettings = Field(default_factory=RetrainSettings, description="movielens_retrain's gate.")
    archive: ArchiveSettings = Field(
        default_factory=ArchiveSettings, description="The feedback archive (served features and outcomes in MinIO)."
    )

    @model_validator(mode="after")
    def _no_default_secrets(self) -> Settings:
        defaults = [name for name, value in self.secrets().items() if value.startswith(DEFAULT_SECRET_PREFIX)]
        if defaults:
            raise ValueError(
                f"no mode accepts the published change-me secrets: {', '.join(sorted(defaults))}. "
                "./run.sh setup generates random secrets into .env (or set your own there)"
            )
        return self

    @model_validator(mode="after")
    def _admins_in_local_mode(self) -> Settings:
        """The local stack runs every server from these settings, so it needs the passwords that a Compose container
        without that account leaves empty."""
        required = (
            "STREAMML_KAFKA__PASSWORD",
            "STREAMML_REDIS__PASSWORD",
            "STREAMML_MINIO__SECRET_KEY",
            "STREAMML_MLFLOW__PASSWORD",
            "STREAMML_MLFLOW__SERVER_SECRET_KEY",
        )
        empty = [name for name in required if not self.secrets()[name]]
        if self.mode == "local" and empty:
            raise ValueError(f"local mode needs {', '.join(empty)}; ./run.sh setup generates them into .env")
        return self

    @model_validator(mode="after")
    def _loopback_only_in_local_mode(self) -> Settings:
        if self.mode != "local" or self.allow_remote_bind:
            return self
        sections = ("kafka", "redis", "minio", "mlflow", "airflow", "api", "dashboard")
        remote = [
            f"STREAMML_{name.upper()}__HOST={getattr(self, name).host}"
            for name in sections
            if not _is_loopback(getattr(self, name).host)
        ]
        if remote:
            raise ValueError(
                f"local mode binds loopback only, and {', '.join(remote)} is not loopback; "
                "set STREAMML_ALLOW_REMOTE_BIND=true to serve the network on purpose"
            )
        return self

    def secrets(self) -> dict[str, str]:
        """Every secret by its environment variable name, revealed (for validation and child process env)."""
        accounts: tuple[Accounts, ...] = (self.kafka, self.redis, self.minio, self.mlflow)
        programs = {
            section.env_name(section.FIELDS[2], name): value.get_secret_value()
            for section in accounts
            for name, value in section.program_secrets().items()
        }
        return {
            "STREAMML_KAFKA__PASSWORD": self.kafka.password.get_secret_value(),
            "STREAMML_REDIS__PASSWORD": self.redis.password.get_secret_value(),
            "STREAMML_MINIO__SECRET_KEY": self.minio.secret_key.get_secret_value(),
            "STREAMML_MLFLOW__SIGNING_KEY": self.mlflow.signing_key.get_secret_value(),
            "STREAMML_MLFLOW__PASSWORD": self.mlflow.password.get_secret_value(),
            "STREAMML_MLFLOW__SERVER_SECRET_KEY": self.mlflow.server_secret_key.get_secret_value(),
            "STREAMML_AIRFLOW__ADMIN_PASSWORD": self.airflow.admin_password.get_secret_value(),
            "STREAMML_AIRFLOW__JWT_SECRET": self.airflow.jwt_secret.get_secret_value(),
            "STREAMML_API__API_KEY": self.api.api_key.get_secret_value(),
            "STREAMML_DASHBOARD__ADMIN_PASSWORD": self.dashboard.admin_password.get_secret_value(),
            "STREAMML_SPARK__AUTH_SECRET": self.spark.auth_secret.get_secret_value(),
            **programs,
        }

    def s3_env(self) -> dict[str, str]:
        """Environment that points boto3, MLflow and Spark's S3A at MinIO."""
        return {
            "AWS_ACCESS_KEY_ID": self.minio.access_key,
            "AWS_SECRET_ACCESS_KEY": self.minio.secret_key.get_secret_value(),
            "AWS_DEFAULT_REGION": self.minio.region,
            "AWS_ENDPOINT_URL_S3": self.minio.endpoint_url,
            "MLFLOW_S3_ENDPOINT_URL": self.minio.endpoint_url,
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; call only from entry points. Also signs this process's MLflow client in (see
    :meth:`MlflowSettings.client_env`)."""
    settings = Settings()
    os.environ.update(settings.mlflow.client_env())
    return settings
