"""Every name shared between processes (topics, Redis keys, buckets, model name and aliases, DAG ids) and the few
defaults that several of them must agree on (the split quantile, the decision threshold)."""

from __future__ import annotations

from datetime import UTC, datetime

# Kafka topics (keys are user ids).
TOPIC_REQUESTS = "ratings.requests.v1"
TOPIC_FEEDBACK = "ratings.feedback.v1"
TOPIC_PREDICTIONS = "predictions.v1"
TOPIC_PREDICTIONS_SHADOW = "predictions.shadow.v1"  # the challenger's scores of the champion's requests
TOPIC_REQUESTS_DLQ = "ratings.requests.dlq.v1"
TOPIC_METRICS = "metrics.v1"
TOPIC_MODEL_EVENTS = "model-events.v1"
TOPICS = (
    TOPIC_REQUESTS,
    TOPIC_FEEDBACK,
    TOPIC_PREDICTIONS,
    TOPIC_PREDICTIONS_SHADOW,
    TOPIC_REQUESTS_DLQ,
    TOPIC_METRICS,
    TOPIC_MODEL_EVENTS,
)

# Consumer groups.
GROUP_SCORER = "streamml-scorer"
GROUP_FEATURE_UPDATER = "streamml-feature-updater"
GROUP_METRICS = "streamml-metrics"
GROUP_SCORER_MODEL_EVENTS = "streamml-scorer-model-events"
GROUP_ARCHIVE = "streamml-archive"
GROUP_DASHBOARD_PEEK = "streamml-dashboard-peek"  # the dashboard's reads of the latest messages (commits nothing)

# Kafka accounts (SASL/SCRAM): the admin (a super user; the CLI, tests and the stack's setup) and one per program
# that uses Kafka, each with the ACLs of streamml.streaming.acl.
KAFKA_ADMIN = "admin"
KAFKA_PROGRAM_ACCOUNTS = ("scorer", "updater", "aggregator", "archive", "replayer", "api", "dashboard", "airflow")
# MLflow accounts (its basic-auth app): the admin, and the programs that use MLflow, each with the permissions of
# streamml.stores.mlflow_auth.
MLFLOW_ADMIN = "admin"
MLFLOW_PROGRAM_ACCOUNTS = ("airflow", "api", "scorer", "aggregator")
# MinIO users (bucket policies in streamml.stores.minio_auth): the root (the CLI, the tests, the stack's setup) and
# the programs that reach MinIO themselves; every other program only through MLflow's artifact proxy.
MINIO_PROGRAM_ACCOUNTS = ("mlflow", "airflow", "archive")
# Redis's accounts (streamml.stores.redis_acl): its own admin user ``default`` and one ACL user per program.
REDIS_ADMIN = "default"
REDIS_PROGRAM_ACCOUNTS = KAFKA_PROGRAM_ACCOUNTS  # every program that signs in to Kafka also reads or writes Redis

# MovieLens files (in a data set directory and in a raw snapshot in MinIO).
RATINGS_FILE = "ratings.csv"
MOVIES_FILE = "movies.csv"

# MinIO buckets.
BUCKET_RAW = "raw"
BUCKET_FEATURES = "features"
BUCKET_MLFLOW = "mlflow"
BUCKETS = (BUCKET_RAW, BUCKET_FEATURES, BUCKET_MLFLOW)

# The feedback archive (training data of the next model): parquet under this prefix of BUCKET_FEATURES, in hourly
# partitions of the feedback's event time, with one intent marker per Kafka partition under ARCHIVE_PENDING.
ARCHIVE_PREFIX = "online/"
ARCHIVE_PENDING = "_pending/"
PROGRAM_ARCHIVE = "archive"  # the supervised program and the Compose service

# MLflow registry.
MODEL_NAME = "movielens-like"
ALIAS_CHAMPION = "champion"
ALIAS_CHALLENGER = "challenger"

# Model metrics: the summary of a registered version (its tags, the dashboard's and API's tables), and the classes.
SUMMARY_METRICS = (
    "streaming_auc",
    "streaming_auc_lag10",
    "streaming_auc_lag60",
    "streaming_auc_lag3600",
    "streaming_log_loss",
    "frozen_auc",
    "frozen_log_loss",
    "streaming_baseline_user_auc",
)
CLASS_NAMES = ("dislike", "like")  # label 0 (rating < 4.0) and 1 (rating >= 4.0)

# Shared defaults.
SPLIT_QUANTILE = 0.8  # the history is every rating before this quantile of time; the stream is the rest
SPLIT_QUANTILE_RANGE = (0.5, 0.95)  # what the DAG param and the CLI accept
DECISION_THRESHOLD = 0.5  # P(like) at or above which a prediction counts as a like

# Airflow DAGs.
DAG_TRAINING = "movielens_training"
DAG_BATCH_SCORING = "batch_scoring"
DAG_RETRAIN = "movielens_retrain"
ASSET_CHAMPION = "movielens_like_champion"  # the Airflow Asset the training DAG updates and batch scoring follows

# Redis keys.
FEATURE_VERSION_CURRENT = "feat:current"
METRICS_PREFIX = "metrics:"
METRICS_LATEST = METRICS_PREFIX + "latest"  # the newest snapshot (JSON)
METRICS_HISTORY = METRICS_PREFIX + "history"  # the last snapshots (list of JSON)
METRICS_DRIFT = METRICS_PREFIX + "drift"  # the latest drift report with its histograms, alarms and retrain (JSON)
METRICS_ERRORS = METRICS_PREFIX + "abs_errors"  # |label - score| of the latest joined predictions (list)
METRICS_RECENT = METRICS_PREFIX + "recent"  # the latest joined predictions (list of JSON)
METRICS_APPLIED_LATENCY = METRICS_PREFIX + "applied_latency_ms"  # feedback sent -> applied online (list, ms)


def user_features_key(version: int, user_id: int) -> str:
    return f"feat:v{version}:user:{user_id}"


def movie_features_key(version: int, movie_id: int) -> str:
    return f"feat:v{version}:movie:{movie_id}"


def globals_features_key(version: int) -> str:
    return f"feat:v{version}:globals"


def applied_ratings_key(version: int) -> str:
    """The set of rating ids applied to feature version ``version`` (reset when the version is materialized)."""
    return f"feat:v{version}:applied"


def replayed_key(version: int) -> str:
    """Set when the whole stream period of feature version ``version`` was replayed (reset with the version)."""
    return f"feat:v{version}:replayed"


def prediction_key(request_id: str) -> str:
    return f"pred:{request_id}"


def archive_object_key(prefix: str, hour_start: int, partition: int, first_offset: int) -> str:
    """The archive object of a Kafka partition's records in the hour starting at ``hour_start`` (unix seconds, UTC),
    named by the lowest offset it holds."""
    hour = datetime.fromtimestamp(hour_start, UTC)
    return f"{prefix}date={hour:%Y-%m-%d}/hour={hour:%H}/p{partition}-o{first_offset:020d}.parquet"


def archive_marker_key(prefix: str, partition: int) -> str:
    """The intent marker of a Kafka partition: the archive objects written but maybe not committed yet."""
    return f"{prefix}{ARCHIVE_PENDING}p{partition}.json"
