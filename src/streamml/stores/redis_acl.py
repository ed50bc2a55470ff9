"""Redis's users: Redis's own ``default`` user is the admin (the CLI, the tests, the stack's setup and health checks);
each program signs in as its own ACL user, which may run only data commands (no CONFIG, FLUSHALL, KEYS, scripts or
pub/sub) on the keys it needs:

- ``scorer``: reads the online features (``feat:*``), writes results (``pred:*``), reads no result back;
- ``updater``: reads and writes the online features and the applied-latency list of the dashboard;
- ``aggregator``: the live metrics (``metrics:*``);
- ``archive``: reads what was served (``pred:*``);
- ``replayer``: reads the features, writes the replay mark of a version (``feat:v<N>:replayed``);
- ``api``: reads the features;
- ``dashboard``: reads the features and the live metrics;
- ``airflow`` (the DAGs' tasks): writes the features (materialization), reads the live metrics (the online gate).

The users live in the server's config, never set at run time, so a restarted server keeps them: the local stack
renders them into ``redis.conf`` (0600, passwords as SHA-256) at every ``stack up``; Compose's redis service reads
:data:`RULES_FILE` (these rules, checked by tests/unit/test_compose.py) and adds each password from its environment.
"""

from __future__ import annotations

import hashlib

from streamml import names
from streamml.config import RedisSettings

# What every program may run: data commands on its keys, transactions, its own connection; no admin command and no
# Lua (FUNCTION is in @write).
COMMANDS = "-@all +@read +@write +@keyspace +@transaction +@connection -@dangerous -function"

# account -> the key patterns it may use (Redis ACL selectors: %R~ read only, %W~ write only, ~ both)
KEYS: dict[str, tuple[str, ...]] = {
    "scorer": ("%R~feat:*", "%W~pred:*"),
    "updater": ("~feat:*", f"~{names.METRICS_APPLIED_LATENCY}"),
    "aggregator": (f"~{names.METRICS_PREFIX}*",),
    "archive": ("%R~pred:*",),
    "replayer": ("%R~feat:*", "%W~feat:v*:replayed"),
    "api": ("%R~feat:*",),
    "dashboard": ("%R~feat:*", f"%R~{names.METRICS_PREFIX}*"),
    "airflow": ("~feat:*", f"%R~{names.METRICS_PREFIX}*"),
}
assert set(KEYS) == set(names.REDIS_PROGRAM_ACCOUNTS), "every Redis user has its keys"  # noqa: S101

ADMIN_RULES = "~* &* +@all"
RULES_FILE = "docker/redis/users.rules"


def rules(account: str) -> str:
    """The ACL rules of ``account`` (all but its password; ``resetchannels``: no pub/sub channel)."""
    if account == names.REDIS_ADMIN:
        return ADMIN_RULES
    return f"resetchannels {' '.join(KEYS[account])} {COMMANDS}"


def rules_file() -> str:
    """:data:`RULES_FILE`: one line per user, its name and its rules (Compose's redis adds the passwords)."""
    accounts = (names.REDIS_ADMIN, *names.REDIS_PROGRAM_ACCOUNTS)
    header = "# Generated from streamml.stores.redis_acl (tests/unit/test_compose.py checks it): NAME RULES\n"
    return header + "".join(f"{account} {rules(account)}\n" for account in accounts)


def user_lines(redis: RedisSettings) -> list[str]:
    """The ``user`` directives of redis.conf: the admin and every program, each with its password's SHA-256."""
    redis.require_programs()
    passwords = {names.REDIS_ADMIN: redis.password, **redis.program_secrets()}
    return [
        f"user {account} reset on #{hashlib.sha256(passwords[account].get_secret_value().encode()).hexdigest()} "
        f"{rules(account)}"
        for account in (names.REDIS_ADMIN, *names.REDIS_PROGRAM_ACCOUNTS)
    ]
