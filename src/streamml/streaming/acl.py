"""Kafka's accounts and ACLs: which program may read and write which topic.

The broker (:func:`streamml.runtime.launch.render_kafka_config`, and the kafka service of docker-compose.yml)
authenticates every client with SASL and authorizes every request with ACLs (``allow.everyone.if.no.acl.found`` is
off). Each program of :data:`ACCESS` signs in with SCRAM-SHA-512 as its own account; the admin is a super user that
also signs in with PLAIN, whose password sits in the broker's own config, so it works before any SCRAM account
exists. :func:`ensure_accounts` runs as the admin at every ``stack up`` (Compose: the kafka-init job): it sets each
account's SCRAM password from the settings (rotating one in .env takes effect at the next start), makes each
program's ACLs exactly those below, and creates the platform topics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from streamml import names
from streamml.config import KafkaSettings
from streamml.errors import TransientError
from streamml.streaming.clients import PLAIN, admin_config, ensure_topics

logger = logging.getLogger(__name__)

SCRAM_ITERATIONS = 8192
CLUSTER = "kafka-cluster"  # the name of the cluster resource


@dataclass(frozen=True)
class Access:
    """What one program's account may do. Every account may also describe and create the platform topics (each
    program creates the ones it lacks at start), and nothing else."""

    read: tuple[str, ...] = ()  # topics it consumes
    write: tuple[str, ...] = ()  # topics it produces to
    groups: tuple[str, ...] = ()  # consumer groups it joins and commits in
    group_prefixes: tuple[str, ...] = ()  # groups it names at run time (the scorer's per-process model-events group)
    lag_of: tuple[str, ...] = ()  # other programs' groups whose committed offsets it reads
    observer: bool = False  # reads every topic and describes every group (the dashboard's Kafka page)


ACCESS: dict[str, Access] = {
    "scorer": Access(
        read=(names.TOPIC_REQUESTS, names.TOPIC_MODEL_EVENTS),
        write=(names.TOPIC_PREDICTIONS, names.TOPIC_PREDICTIONS_SHADOW, names.TOPIC_REQUESTS_DLQ),
        groups=(names.GROUP_SCORER,),
        group_prefixes=(names.GROUP_SCORER_MODEL_EVENTS + "-",),
    ),
    "updater": Access(
        read=(names.TOPIC_FEEDBACK,), write=(names.TOPIC_REQUESTS_DLQ,), groups=(names.GROUP_FEATURE_UPDATER,)
    ),
    "aggregator": Access(
        read=(names.TOPIC_PREDICTIONS, names.TOPIC_PREDICTIONS_SHADOW, names.TOPIC_FEEDBACK, names.TOPIC_REQUESTS_DLQ),
        write=(names.TOPIC_METRICS, names.TOPIC_REQUESTS_DLQ),
        groups=(names.GROUP_METRICS,),
        lag_of=(names.GROUP_SCORER,),
    ),
    "archive": Access(read=(names.TOPIC_FEEDBACK,), write=(names.TOPIC_REQUESTS_DLQ,), groups=(names.GROUP_ARCHIVE,)),
    "replayer": Access(write=(names.TOPIC_REQUESTS, names.TOPIC_FEEDBACK)),
    "api": Access(write=(names.TOPIC_MODEL_EVENTS,)),  # promote and roll back tell the scorers
    "airflow": Access(write=(names.TOPIC_MODEL_EVENTS,)),  # the training and retrain DAGs' promotions
    "dashboard": Access(groups=(names.GROUP_DASHBOARD_PEEK,), observer=True),
}
assert set(ACCESS) == set(names.KAFKA_PROGRAM_ACCOUNTS), "every program account has its ACLs"  # noqa: S101


def principal(account: str) -> str:
    return f"User:{account}"


def bindings(access: Access) -> set[tuple[str, str, str, str]]:
    """The ACLs of an account as (resource type, pattern type, resource name, operation), all ALLOW from any host."""
    topic, group, literal, prefixed = "TOPIC", "GROUP", "LITERAL", "PREFIXED"
    wanted = {(topic, literal, t, op) for t in names.TOPICS for op in ("DESCRIBE", "CREATE")}
    wanted |= {(topic, literal, t, "READ") for t in access.read}
    wanted |= {(topic, literal, t, "WRITE") for t in access.write}
    wanted |= {(group, literal, g, "READ") for g in access.groups}
    wanted |= {(group, prefixed, g, "READ") for g in access.group_prefixes}
    wanted |= {(group, literal, g, "DESCRIBE") for g in access.lag_of}
    if access.observer:  # also what kafka-ui (read-only) needs under Compose
        wanted |= {(topic, literal, "*", op) for op in ("READ", "DESCRIBE_CONFIGS")}
        wanted |= {(group, literal, "*", "DESCRIBE")}
        wanted |= {("BROKER", literal, CLUSTER, op) for op in ("DESCRIBE", "DESCRIBE_CONFIGS")}  # Java's CLUSTER
    return wanted


def _binding(account: str, spec: tuple[str, str, str, str]) -> Any:
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    kind, pattern, name, op = spec
    return AclBinding(
        ResourceType[kind],
        name,
        ResourcePatternType[pattern],
        principal(account),
        "*",
        AclOperation[op],
        AclPermissionType.ALLOW,
    )


def _spec(binding: Any) -> tuple[str, str, str, str]:
    return (binding.restype.name, binding.resource_pattern_type.name, binding.name, binding.operation.name)


def ensure_accounts(kafka: KafkaSettings, timeout: float = 30.0) -> None:
    """Make the broker's accounts and ACLs those of the settings and :data:`ACCESS` (idempotent), then create the
    platform topics. Signs in as the admin over PLAIN; ``kafka`` must hold every program's password."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    kafka.require_programs()
    admin = AdminClient(admin_config(kafka, PLAIN))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    accounts = {names.KAFKA_ADMIN: kafka.password, **kafka.program_passwords}
    upserts: list[Any] = [
        UserScramCredentialUpsertion(name, info, password.get_secret_value().encode())
        for name, password in accounts.items()
    ]
    try:
        for future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout).values():
            future.result(timeout)
        for account in names.KAFKA_PROGRAM_ACCOUNTS:
            wanted = bindings(ACCESS[account])
            everything = AclBindingFilter(
                ResourceType.ANY,
                None,  # type: ignore[arg-type] # None: any name
                ResourcePatternType.ANY,
                principal(account),
                None,  # type: ignore[arg-type] # None: any host
                AclOperation.ANY,
                AclPermissionType.ANY,
            )
            held = admin.describe_acls(everything, request_timeout=timeout).result(timeout)
            kept = [b for b in held if _spec(b) in wanted and b.host == "*" and b.permission_type.name == "ALLOW"]
            stale = [b for b in held if b not in kept]
            missing_acls = [_binding(account, spec) for spec in sorted(wanted - {_spec(b) for b in kept})]
            if stale:
                for future in admin.delete_acls(stale, request_timeout=timeout).values():
                    future.result(timeout)
            if missing_acls:
                for future in admin.create_acls(missing_acls, request_timeout=timeout).values():
                    future.result(timeout)
            logger.info("kafka account=%s acls=%d (+%d -%d)", account, len(wanted), len(missing_acls), len(stale))
    except KafkaException as exc:
        raise TransientError(f"could not set Kafka's accounts and ACLs at {kafka.bootstrap_servers}: {exc}") from exc
    ensure_topics(kafka, names.TOPICS, mechanism=PLAIN, timeout=timeout)
