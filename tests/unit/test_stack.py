from __future__ import annotations

import hashlib
import shutil
import socket
import stat
from pathlib import Path

import pytest

from streamml import names
from streamml.config import Settings
from streamml.errors import ConfigError
from streamml.paths import StackPaths
from streamml.runtime import health
from streamml.runtime.launch import redis_config_path
from streamml.runtime.programs import all_programs
from streamml.runtime.stack import LocalStack, render_supervisord_conf


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.chdir(tmp_path)
    return Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")


def test_every_program_gets_a_section_a_log_and_no_autostart(settings: Settings, tmp_path: Path) -> None:
    paths = StackPaths.from_settings(settings, tmp_path)
    programs = all_programs(settings, paths)
    conf = render_supervisord_conf(programs, paths)
    names = {p.name for p in programs}
    assert {
        "kafka",
        "redis",
        "minio",
        "mlflow",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    } <= names
    for name in names:
        assert f"[program:{name}]" in conf
        assert f"stdout_logfile={paths.logs / (name + '.log')}" in conf
    assert conf.count("autostart=false") == len(programs)
    jobs = [p for p in programs if not p.long_running]
    assert [p.name for p in jobs] == ["replayer"]  # restarted when it fails, not when it finishes
    assert conf.count("autorestart=true") == len(programs) - len(jobs)
    assert conf.count("autorestart=unexpected") == len(jobs)


def test_scorer_replicas_are_programs_of_one_service_each_with_its_own_metrics_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STREAMML_SCORER__REPLICAS", "3")
    monkeypatch.setenv("STREAMML_SCORER__REPLICA_METRICS_PORT", "9600")
    settings = Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    paths = StackPaths.from_settings(settings, tmp_path)
    scorers = [p for p in all_programs(settings, paths) if p.service == "scorer"]
    assert [p.name for p in scorers] == ["scorer", "scorer-1", "scorer-2"]
    assert [p.ports[0][0] for p in scorers] == [settings.scorer.metrics_port, 9600, 9601]
    assert [p.env["STREAMML_SCORER__METRICS_PORT"] for p in scorers] == [
        str(settings.scorer.metrics_port),
        "9600",
        "9601",
    ]
    assert len({p.env["STREAMML_KAFKA__USER"] for p in scorers}) == 1  # one account, one consumer group
    assert render_supervisord_conf(scorers, paths).count("[program:scorer") == 3


def test_ports_bind_loopback_only(settings: Settings, tmp_path: Path) -> None:
    programs = all_programs(settings, StackPaths.from_settings(settings, tmp_path))
    flat = {p.name: " ".join(p.command) for p in programs}
    stack = LocalStack(settings, tmp_path)
    stack.render()
    assert "bind 127.0.0.1\n" in redis_config_path(stack.paths).read_text()
    assert f"--address 127.0.0.1:{settings.minio.port}" in flat["minio"]
    assert "--host 127.0.0.1" in flat["mlflow"]
    assert "--host 127.0.0.1" in flat["airflow-api-server"]


def test_secrets_with_special_characters_survive_rendering(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMML_MINIO__SECRET_KEY", 'pa%ss"word')
    settings = Settings(state_dir=tmp_path / "s")
    paths = StackPaths.from_settings(settings, tmp_path)
    conf = render_supervisord_conf(all_programs(settings, paths), paths)
    assert 'MINIO_ROOT_PASSWORD="pa%%ss\\"word"' in conf


def test_redis_users_and_their_passwords_are_in_its_config_never_on_a_command_line(
    settings: Settings, tmp_path: Path
) -> None:
    stack = LocalStack(settings, tmp_path)
    stack.render()
    redis = next(p for p in stack.programs if p.name == "redis")
    conf = redis_config_path(stack.paths)
    assert redis.command[-1] == str(conf)
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    users = {line.split()[1]: line for line in conf.read_text().splitlines() if line.startswith("user ")}
    assert set(users) == {names.REDIS_ADMIN, *names.REDIS_PROGRAM_ACCOUNTS}
    passwords = {names.REDIS_ADMIN: settings.redis.password, **settings.redis.program_secrets()}
    for account, line in users.items():
        secret = passwords[account].get_secret_value()
        assert secret not in " ".join(redis.command) and secret not in line  # only its SHA-256
        assert f"#{hashlib.sha256(secret.encode()).hexdigest()}" in line.split()
    assert "+@all" in users[names.REDIS_ADMIN].split() and "-@dangerous" in users["scorer"].split()


def test_taken_port_names_port_and_variable_and_starts_nothing(settings: Settings, tmp_path: Path) -> None:
    stack = LocalStack(settings, tmp_path)
    kafka = next(p for p in stack.programs if p.name == "kafka")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        taken = type(kafka)(**{**kafka.__dict__, "ports": ((port, "STREAMML_KAFKA__PORT"),)})
        with pytest.raises(ConfigError) as info:
            stack.check_ports([taken])
    assert str(port) in str(info.value)
    assert "STREAMML_KAFKA__PORT" in str(info.value)
    assert not stack.supervisor.running()


def test_missing_prerequisites_are_named(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Kafka jars.*MinIO binary.*run.sh setup"):
        LocalStack(settings, tmp_path).check_prerequisites()


def test_a_nearly_full_disk_is_named_with_the_fix_before_anything_starts(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = LocalStack(settings, tmp_path)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage._replace(free=200 * 2**20))
    with pytest.raises(ConfigError) as info:
        stack.check_disk()
    cause, fix = str(info.value).splitlines()
    assert cause.startswith("only 0.2 GiB free on the disk of ") and "needs at least 1 GiB" in cause
    assert "fix:" in fix and "STREAMML_STATE_DIR" in fix
    assert not stack.supervisor.running()


def test_a_service_that_never_became_healthy_is_reported_with_the_end_of_its_log(
    settings: Settings, tmp_path: Path
) -> None:
    stack = LocalStack(settings, tmp_path)
    stack.paths.logs.mkdir(parents=True)
    lines = [f"line {k}" for k in range(30)] + ["ERROR: address already in use"]
    (stack.paths.logs / "redis.log").write_text("\n".join(lines) + "\n")
    report = stack.down_report(health.StillDown([health.Health("redis", False, "ConnectionError: refused")], 60))
    assert report.startswith("still down after 60s: redis (ConnectionError: refused)")
    assert "ERROR: address already in use" in report and "line 19" in report and "line 18" not in report
    assert report.splitlines()[-1].strip().startswith("fix: read the whole log (./run.sh logs redis)")


def test_generated_config_holding_secrets_is_private_from_creation(settings: Settings, tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)  # what a default shell gives: files 0644 unless created otherwise
    try:
        stack = LocalStack(settings, tmp_path)
        stack.paths.supervisor_conf.parent.mkdir(parents=True)
        stack.paths.supervisor_conf.write_text("an older, world-readable render")
        stack.render()
    finally:
        os.umask(old)
    paths = stack.paths
    for directory in (paths.state, paths.logs, paths.airflow_home, paths.supervisor_conf.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for secret_file in (paths.supervisor_conf, paths.airflow_home / "passwords.json"):
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600, secret_file
    assert settings.airflow.admin_password.get_secret_value() in (paths.airflow_home / "passwords.json").read_text()


def test_a_standalone_cluster_needs_the_shared_secret_and_local_mode_none(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamml.spark_session import SPARK_AUTH_SECRET, cluster_conf, submit_argv

    assert cluster_conf(settings, "local[*]") == {}
    secret = settings.spark.auth_secret.get_secret_value()
    assert cluster_conf(settings, "spark://master:7077") == {
        "spark.authenticate": "true",
        SPARK_AUTH_SECRET: secret,
        "spark.executor.memory": settings.spark.executor_memory,
    }
    monkeypatch.setattr("streamml.spark_session.spark_jars", lambda _: ["hadoop-aws.jar"])
    cluster = settings.model_copy(update={"spark": settings.spark.model_copy(update={"master": "spark://m:7077"})})
    assert not any(secret in arg for arg in submit_argv(cluster, Path("job.py")))  # the driver sets it itself
    monkeypatch.setenv("STREAMML_SPARK__AUTH_SECRET", "")
    with pytest.raises(ConfigError, match="STREAMML_SPARK__AUTH_SECRET"):
        cluster_conf(Settings(), "spark://master:7077")


def test_the_local_cluster_authenticates_takes_no_rest_submissions_and_keeps_its_secret_off_the_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STREAMML_SPARK__AUTH_SECRET", "cluster-secret-for-the-test")
    settings = Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    programs = {p.name: p for p in all_programs(settings, StackPaths.from_settings(settings, tmp_path))}
    master, worker = programs["spark-master"], programs["spark-worker"]
    opts = master.env["SPARK_MASTER_OPTS"].split()
    assert {"-Dspark.authenticate=true", "-Dspark.ui.killEnabled=false", "-Dspark.master.rest.enabled=false"} <= set(
        opts
    )
    assert "-Dspark.authenticate=true" in worker.env["SPARK_WORKER_OPTS"].split()
    secret = settings.spark.auth_secret.get_secret_value()
    for p in (master, worker):
        assert p.env["_SPARK_AUTH_SECRET"] == secret and not any(secret in a for a in p.command)
        assert p.service == "spark" and p.stage == 0
    assert worker.command[-1] == settings.spark.cluster_url


def test_spark_submit_never_carries_the_minio_secret(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamml import spark_session
    from streamml.spark_session import submit_argv

    monkeypatch.setattr(spark_session, "spark_jars", lambda _: ["hadoop-aws.jar"])
    argv = submit_argv(settings, Path("job.py"), "--version", "1")
    secret = settings.minio.secret_key.get_secret_value()
    assert not any(secret in arg for arg in argv)
    assert f"spark.hadoop.fs.s3a.access.key={settings.minio.access_key}" in argv
