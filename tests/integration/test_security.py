"""Closed by default, on the running stack: what an unauthenticated client gets, where the secrets are, and where
they are not (command lines, world-readable files)."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore
import botocore.config
import httpx
import pytest
import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

from streamml import names
from streamml.config import Settings
from streamml.paths import StackPaths, repo_root
from streamml.stores.objects import s3_client
from streamml.streaming.clients import admin_config, connection_config, consumer_config, producer_config

pytestmark = pytest.mark.integration


def test_redis_refuses_a_client_without_the_password(settings: Settings, require: Callable[[str], None]) -> None:
    require("redis")
    anonymous = redis.Redis(host=settings.redis.host, port=settings.redis.port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    wrong = redis.Redis(host=settings.redis.host, port=settings.redis.port, password="guess", socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    assert redis.Redis.from_url(settings.redis.url, socket_timeout=5).ping()


def test_redis_program_users_reach_only_their_keys_and_no_admin_command(
    settings: Settings, require: Callable[[str], None], uid: str
) -> None:
    require("redis")

    def signed_in(account: str) -> redis.Redis:
        return redis.Redis.from_url(settings.redis.as_account(account).url, socket_timeout=5)

    admin = redis.Redis.from_url(settings.redis.url, socket_timeout=5)
    feature, result = f"feat:test-{uid}", f"pred:test-{uid}"
    admin.set(feature, b"online features")
    try:
        scorer, api, updater = signed_in("scorer"), signed_in("api"), signed_in("updater")
        assert scorer.get(feature) == b"online features" and api.get(feature) == b"online features"
        scorer.set(result, b"served", ex=60)  # its results
        assert admin.get(result) == b"served"
        refused = [
            lambda: scorer.set(feature, b"poisoned"),  # features are the updater's
            lambda: scorer.get(result),  # write only
            lambda: api.set(result, b"forged"),
            lambda: updater.set(result, b"forged"),
            lambda: signed_in("dashboard").set(names.METRICS_LATEST, b"{}"),
            lambda: signed_in("archive").get(feature),
            lambda: scorer.flushall(),
            lambda: scorer.config_get("requirepass"),
            lambda: updater.eval("return 1", 0),
            lambda: updater.function_flush(),
            lambda: api.keys("*"),
        ]
        for attempt in refused:
            with pytest.raises(redis.exceptions.NoPermissionError):
                attempt()
        assert admin.get(feature) == b"online features" and admin.get(result) == b"served"
        wrong = settings.redis.as_account("scorer").model_copy(update={"password": SecretStr("guess-guess")})
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(wrong.url, socket_timeout=5).ping()
    finally:
        admin.delete(feature, result)


def test_kafka_refuses_a_client_that_does_not_sign_in(settings: Settings, require: Callable[[str], None]) -> None:
    require("kafka")
    quick = {"socket.timeout.ms": 5000, "socket.connection.setup.timeout.ms": 5000, "log_level": 0}
    anonymous = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers, **quick})
    with pytest.raises(KafkaException):
        anonymous.list_topics(timeout=8)
    guess = settings.kafka.model_copy(update={"password": SecretStr("guess-guess")})
    for mechanism in ("SCRAM-SHA-512", "PLAIN"):
        errors: list[KafkaError] = []
        client = AdminClient({**admin_config(guess, mechanism), **quick, "error_cb": errors.append})
        with pytest.raises(KafkaException):
            client.list_topics(timeout=8)
        client.poll(1)  # serves error_cb
        assert KafkaError._AUTHENTICATION in {e.code() for e in errors}, f"{mechanism}: {errors}"
    assert AdminClient(admin_config(settings.kafka)).list_topics(timeout=10).topics


def _delivery_errors(producer: Producer, topic: str) -> list[Any]:
    errors: list[Any] = []
    producer.produce(topic, key=b"1", value=b"{}", on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(15) == 0, "undelivered and unreported"
    return errors


def test_kafka_acls_keep_each_program_to_its_topics(settings: Settings, require: Callable[[str], None]) -> None:
    """A program's account cannot forge another's messages (the scorer writing feedback or overwriting a model
    event), read what it has no business reading, or create a topic; its own topics work."""
    require("kafka")
    scorer, replayer, dashboard = (settings.kafka.as_account(a) for a in ("scorer", "replayer", "dashboard"))
    forged = _delivery_errors(Producer(producer_config(scorer, client_id="test-forger")), names.TOPIC_FEEDBACK)
    assert [e.code() for e in forged] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    event = _delivery_errors(Producer(producer_config(replayer, client_id="test-forger")), names.TOPIC_MODEL_EVENTS)
    assert [e.code() for e in event] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

    reader = Consumer(consumer_config(replayer, names.GROUP_METRICS))  # another program's group, too
    reader.assign([TopicPartition(names.TOPIC_PREDICTIONS, 0, 0)])
    try:
        msg = reader.poll(10)
        assert msg is not None and msg.error() is not None
        assert msg.error().code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)
    finally:
        reader.close()

    topic = f"test-acl-{uuid.uuid4().hex[:8]}"
    for account in (scorer, dashboard):
        admin = AdminClient(admin_config(account))
        with pytest.raises(KafkaException) as refused:
            admin.create_topics([NewTopic(topic, 1)])[topic].result(15)
        assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # the dashboard's account reads every topic and group, and writes none
    assert names.TOPIC_REQUESTS in AdminClient(admin_config(dashboard)).list_topics(timeout=10).topics
    peek = _delivery_errors(Producer({**connection_config(dashboard), "acks": "all"}), names.TOPIC_REQUESTS)
    assert [e.code() for e in peek] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]


def test_mlflow_refuses_anonymous_clients_and_keeps_readers_from_writing(
    settings: Settings, require: Callable[[str], None]
) -> None:
    """Anyone who reached port 5000 could register a version or move @champion; now a client signs in, and only the
    admin, airflow and api accounts may write (streamml.stores.mlflow_auth)."""
    require("mlflow")
    ml = settings.mlflow
    api = f"{ml.tracking_uri}/api/2.0/mlflow"
    alias = {"name": names.MODEL_NAME, "alias": names.ALIAS_CHAMPION, "version": "1"}
    user = {"username": "intruder", "password": "intruder-password"}
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{ml.tracking_uri}/health").status_code == 200, "the health check stays open"
        for auth in (None, (ml.user, "guess-guess")):
            assert http.post(f"{api}/experiments/search", json={"max_results": 1}, auth=auth).status_code == 401
            assert http.post(f"{api}/registered-models/alias", json=alias, auth=auth).status_code == 401
            assert http.post(f"{api}/users/create", json=user, auth=auth).status_code == 401
        admin = (ml.user, ml.password.get_secret_value())
        found = http.get(f"{api}/experiments/get-by-name", params={"experiment_name": ml.experiment}, auth=admin)
        assert found.status_code == 200, found.text
        experiment_id = found.json()["experiment"]["experiment_id"]
        for account in ("scorer", "aggregator"):
            reader = ml.as_account(account)
            auth = (reader.user, reader.password.get_secret_value())
            assert http.post(f"{api}/experiments/search", json={"max_results": 1}, auth=auth).status_code == 200
            refused = [
                http.post(f"{api}/registered-models/alias", json=alias, auth=auth),
                http.post(f"{api}/runs/create", json={"experiment_id": experiment_id}, auth=auth),
                http.post(f"{api}/users/create", json=user, auth=auth),
            ]
            assert [r.status_code for r in refused] == [403] * 3, [r.text for r in refused]


def test_minio_keeps_each_program_to_its_buckets(settings: Settings, require: Callable[[str], None]) -> None:
    """Every program used the root key; now the archive may touch only features/online/, the mlflow server only
    its bucket, and neither may read the raw ratings (streamml.stores.minio_auth)."""
    require("minio")

    def refused(client: Any, call: str, **kwargs: Any) -> str:
        with pytest.raises(botocore.exceptions.ClientError) as error:
            getattr(client, call)(**kwargs)
        return str(error.value.response["Error"]["Code"])

    anonymous = boto3.client(
        "s3",
        endpoint_url=settings.minio.endpoint_url,
        config=botocore.config.Config(signature_version=botocore.UNSIGNED),
    )
    assert refused(anonymous, "list_objects_v2", Bucket=names.BUCKET_MLFLOW) == "AccessDenied"
    guess = settings.minio.model_copy(update={"secret_key": SecretStr("guess-guess")})
    assert refused(s3_client(guess), "list_buckets") == "SignatureDoesNotMatch"
    archive, server = (s3_client(settings.minio.as_account(a)) for a in ("archive", "mlflow"))
    key = f"{names.ARCHIVE_PREFIX}_test-{uuid.uuid4().hex[:8]}"
    archive.put_object(Bucket=names.BUCKET_FEATURES, Key=key, Body=b"1")
    archive.delete_object(Bucket=names.BUCKET_FEATURES, Key=key)
    for bucket, prefix in ((names.BUCKET_RAW, ""), (names.BUCKET_MLFLOW, ""), (names.BUCKET_FEATURES, "v1/")):
        assert refused(archive, "put_object", Bucket=bucket, Key=f"{prefix}forged", Body=b"1") == "AccessDenied"
        assert refused(archive, "list_objects_v2", Bucket=bucket, Prefix=prefix) == "AccessDenied"
    assert refused(server, "list_objects_v2", Bucket=names.BUCKET_RAW) == "AccessDenied"
    assert refused(archive, "create_bucket", Bucket=f"test-{uuid.uuid4().hex[:8]}") == "AccessDenied"


def test_no_secret_is_on_any_command_line(settings: Settings, require: Callable[[str], None]) -> None:
    """What `ps` shows every user of the machine: each running process's arguments, the stack's included."""
    for service in ("kafka", "redis", "minio", "mlflow", "airflow"):
        require(service)
    secrets = {name: value for name, value in settings.secrets().items() if len(value) >= 8}
    leaks = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        leaks += [f"{name} in pid {cmdline.parent.name}" for name, value in secrets.items() if value in args]
    assert not leaks, leaks


def test_env_and_state_are_readable_only_by_their_owner(settings: Settings, require: Callable[[str], None]) -> None:
    require("redis")
    paths = StackPaths.from_settings(settings)
    env = repo_root() / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.state.stat().st_mode) == 0o700
    for secret_file in (paths.supervisor_conf, paths.airflow_home / "passwords.json", paths.state / "redis/redis.conf"):
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600, secret_file
