"""The Kafka accounts' ACLs and the broker config that enforces them (the integration tests try them on a broker)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streamml import names
from streamml.config import Settings
from streamml.errors import ConfigError
from streamml.paths import StackPaths
from streamml.runtime.launch import kafka_paths, render_kafka_config
from streamml.runtime.programs import all_programs
from streamml.streaming.acl import ACCESS, bindings


def writable(account: str) -> set[str]:
    return {name for kind, _, name, op in bindings(ACCESS[account]) if kind == "TOPIC" and op == "WRITE"}


def readable(account: str) -> set[str]:
    return {name for kind, _, name, op in bindings(ACCESS[account]) if kind == "TOPIC" and op == "READ"}


def test_each_topic_has_the_writers_the_data_flow_names() -> None:
    writers = {t: {a for a in ACCESS if t in writable(a)} for t in names.TOPICS}
    assert writers == {
        names.TOPIC_REQUESTS: {"replayer"},
        names.TOPIC_FEEDBACK: {"replayer"},
        names.TOPIC_PREDICTIONS: {"scorer"},
        names.TOPIC_PREDICTIONS_SHADOW: {"scorer"},
        names.TOPIC_REQUESTS_DLQ: {"scorer", "updater", "aggregator", "archive"},
        names.TOPIC_METRICS: {"aggregator"},
        names.TOPIC_MODEL_EVENTS: {"api", "airflow"},
    }


def test_no_account_may_alter_the_cluster_or_write_everywhere() -> None:
    for account, access in ACCESS.items():
        for kind, _, name, op in bindings(access):
            assert op not in ("ALTER", "ALTER_CONFIGS", "DELETE", "ALL", "CLUSTER_ACTION"), (account, kind, name, op)
            if name == "*":
                assert op in ("READ", "DESCRIBE", "DESCRIBE_CONFIGS"), f"{account} may {op} every {kind}"
            if op == "CREATE":
                assert kind == "TOPIC" and name in names.TOPICS, f"{account} may create {kind} {name}"
    assert readable("dashboard") == {"*"} and writable("dashboard") == set()
    assert readable("replayer") == set(), "the replayer reads nothing"


def test_each_program_signs_in_as_its_own_account(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    programs = all_programs(settings, StackPaths.from_settings(settings, tmp_path))
    users = {p.name: p.env.get("STREAMML_KAFKA__USER") for p in programs}
    assert users["scorer"] == "scorer" and users["feature-updater"] == "updater"
    assert users["airflow-scheduler"] == "airflow", "DAG tasks publish model events as airflow"
    assert {users[p.name] for p in programs if p.stage == 2} | {"airflow"} == set(names.KAFKA_PROGRAM_ACCOUNTS)
    for p in programs:
        if user := p.env.get("STREAMML_KAFKA__USER"):
            assert p.env["STREAMML_KAFKA__PASSWORD"] == settings.kafka.program_passwords[user].get_secret_value()


def test_a_program_account_without_a_password_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("STREAMML_KAFKA__PROGRAM_PASSWORDS__SCORER")
    with pytest.raises(ConfigError, match="STREAMML_KAFKA__PROGRAM_PASSWORDS__SCORER"):
        Settings().kafka.as_account("scorer")


def test_the_broker_config_authenticates_every_listener_and_is_private(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    paths = StackPaths.from_settings(settings, tmp_path)
    render_kafka_config(settings, paths)
    props_path = kafka_paths(paths)[0]
    assert stat.S_IMODE(props_path.stat().st_mode) == 0o600, "it holds the admin's password"
    props = dict(line.split("=", 1) for line in props_path.read_text().splitlines() if "=" in line)
    protocols = dict(pair.split(":") for pair in props["listener.security.protocol.map"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin"
    assert settings.kafka.password.get_secret_value() in props["listener.name.client.plain.sasl.jaas.config"]
    for account in names.KAFKA_PROGRAM_ACCOUNTS:  # their SCRAM credentials live in the cluster's metadata
        assert settings.kafka.program_passwords[account].get_secret_value() not in props_path.read_text()
