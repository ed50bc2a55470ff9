"""Launchers that prepare a server's data directory and then exec it, so supervisord supervises the server itself.

Used as supervisord commands: ``python -m streamml.runtime.launch kafka``.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from pathlib import Path

from streamml import names
from streamml.config import KafkaSettings, Settings, get_settings
from streamml.errors import ConfigError
from streamml.paths import StackPaths, write_private
from streamml.streaming.clients import PLAIN, SCRAM

KAFKA_MAIN = "kafka.Kafka"
KAFKA_STORAGE_TOOL = "kafka.tools.StorageTool"


def kafka_paths(paths: StackPaths) -> tuple[Path, Path, Path]:
    """(server.properties, log4j2 config, data dir) of the local broker."""
    base = paths.state / "kafka"
    return base / "server.properties", base / "log4j2.properties", base / "data"


def jaas(module: str, user: str, password: str, **users: str) -> str:
    """A JAAS line of the broker's config (the password of each ``users`` entry is one the listener accepts)."""

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    accepted = "".join(f" user_{name}={quoted(value)}" for name, value in users.items())
    return f"{module} required username={quoted(user)} password={quoted(password)}{accepted};"


PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def kafka_security_config(kafka: KafkaSettings, client_listeners: tuple[str, ...] = ("client",)) -> list[str]:
    """SASL and ACLs of the broker (streamml.streaming.acl): clients sign in with SCRAM-SHA-512 on each of
    ``client_listeners``; the admin also with PLAIN, which the broker uses for its own connections (the controller
    link, inter-broker) and whose password is here, so it works before any SCRAM account exists. The kafka service
    of docker-compose.yml sets the same (tests/unit/test_compose.py compares them)."""
    admin, password = kafka.user, kafka.password.get_secret_value()
    plain = jaas(PLAIN_MODULE, admin, password, **{admin: password})
    lines = []
    for name in client_listeners:
        lines += [
            f"listener.name.{name}.sasl.enabled.mechanisms={SCRAM},{PLAIN}",
            f"listener.name.{name}.scram-sha-512.sasl.jaas.config={SCRAM_MODULE} required;",
            f"listener.name.{name}.plain.sasl.jaas.config={plain}",
        ]
    return [
        *lines,
        f"sasl.mechanism.inter.broker.protocol={PLAIN}",
        f"listener.name.controller.sasl.enabled.mechanisms={PLAIN}",
        f"listener.name.controller.plain.sasl.jaas.config={plain}",
        f"sasl.mechanism.controller.protocol={PLAIN}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{admin}",
        "allow.everyone.if.no.acl.found=false",
    ]


def render_kafka_config(settings: Settings, paths: StackPaths) -> None:
    """Write the single-node KRaft broker's config (broker and controller in one process; 0600: it holds the admin's
    password)."""
    k = settings.kafka
    if k.user != names.KAFKA_ADMIN:
        raise ConfigError(f"the broker's config is rendered with the admin account, not {k.user!r}")
    props, log4j, data = kafka_paths(paths)
    write_private(
        props,
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{k.host}:{k.controller_port}",
                f"listeners=CLIENT://{k.host}:{k.port},CONTROLLER://{k.host}:{k.controller_port}",
                f"advertised.listeners=CLIENT://{k.host}:{k.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=CLIENT",
                "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT",
                *kafka_security_config(k),
                f"log.dirs={data}",
                f"num.partitions={k.partitions}",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "share.coordinator.state.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                # KIP-848 groups (the platform's consumers): the broker sets their heartbeat and session timeout.
                # A 1 s heartbeat hands a partition over within about a second when a scorer joins or leaves; a
                # member killed without leaving is fenced after 10 s (Kafka's defaults: 5 s and 45 s).
                "group.consumer.min.heartbeat.interval.ms=500",
                "group.consumer.heartbeat.interval.ms=1000",
                "group.consumer.min.session.timeout.ms=6000",
                "group.consumer.session.timeout.ms=10000",
                f"log.retention.ms={k.retention_ms}",
                "",
            ]
        ),
    )
    log4j.write_text(
        "\n".join(
            [
                "status = warn",
                "appender.console.type = Console",
                "appender.console.name = STDOUT",
                "appender.console.layout.type = PatternLayout",
                "appender.console.layout.pattern = [%d] %p %m (%c)%n",
                "rootLogger.level = INFO",
                "rootLogger.appenderRef.stdout.ref = STDOUT",
                "logger.kafka.name = kafka",
                "logger.kafka.level = INFO",
                "logger.state.name = state.change.logger",
                "logger.state.level = WARN",
                "",
            ]
        )
    )


def mlflow_auth_config_path(paths: StackPaths) -> Path:
    return paths.state / "mlflow" / "basic_auth.ini"


def mlflow_auth_db(paths: StackPaths) -> Path:
    return paths.state / "mlflow" / "basic_auth.db"


def redis_config_path(paths: StackPaths) -> Path:
    return paths.state / "redis" / "redis.conf"


def render_redis_config(settings: Settings, paths: StackPaths) -> None:
    """Write the Redis server's config (0600, not on a command line): its users (streamml.stores.redis_acl), each with
    its password's SHA-256."""
    from streamml.stores.redis_acl import user_lines

    r = settings.redis
    write_private(
        redis_config_path(paths),
        "\n".join(
            [
                f"bind {r.host}",
                f"port {r.port}",
                f"dir {paths.state / 'redis'}",
                "appendonly yes",
                "protected-mode yes",
                "daemonize no",
                *user_lines(r),  # the default user (the admin) needs a password too: no client works without
                "",
            ]
        ),
    )


def kafka_java(paths: StackPaths, main: str, *args: str, heap: str = "256m") -> list[str]:
    _, log4j, _ = kafka_paths(paths)
    return [
        "java",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{paths.kafka_libs}/*",
        main,
        *args,
    ]


def format_kafka_storage(paths: StackPaths) -> None:
    """Format the KRaft log dir once; a formatted dir (meta.properties present) is left as it is."""
    props, _, data = kafka_paths(paths)
    if (data / "meta.properties").exists():
        return
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    subprocess.run(  # noqa: S603 - fixed argv built from our own paths
        kafka_java(paths, KAFKA_STORAGE_TOOL, "format", "-t", cluster_id, "-c", str(props)), check=True
    )


def exec_kafka(settings: Settings, paths: StackPaths) -> None:
    render_kafka_config(settings, paths)
    format_kafka_storage(paths)
    props, _, _ = kafka_paths(paths)
    argv = kafka_java(paths, KAFKA_MAIN, str(props), heap=settings.kafka.heap)
    os.execvp(argv[0], argv)  # noqa: S606 - replace this launcher with the broker


def main(argv: list[str]) -> int:
    if argv != ["kafka"]:
        sys.stderr.write("usage: python -m streamml.runtime.launch kafka\n")
        return 2
    settings = get_settings()
    exec_kafka(settings, StackPaths.from_settings(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
