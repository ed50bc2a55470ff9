"""Shared set-up for streaming tests: ml-latest-small's history snapshot loaded as feature version 1 into a Redis
database of the test's own, and the offline state to compare with."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import xmlrpc.client
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
from confluent_kafka import Consumer

from streamml import names
from streamml.config import Settings
from streamml.data import movielens
from streamml.features import packing, spec
from streamml.stores.features import RedisFeatureStore
from streamml.streaming.clients import consumer_config


def movielens_split() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    directory = os.environ.get("STREAMML_MOVIELENS_DIR")
    if not directory:
        pytest.fail("set STREAMML_MOVIELENS_DIR (CI uses ../shared/datasets/ml-latest-small)")
    ratings, movies = movielens.load(Path(directory))
    history, stream, _ = movielens.time_split(ratings)
    return history, stream, movies


def load_history_snapshot(client: redis.Redis, history: pd.DataFrame, movies: pd.DataFrame) -> spec.FeatureState:
    """Replay history, write its snapshot as version 1, activate it; return the offline state."""
    state = spec.FeatureState.from_movies(movies)
    spec.point_in_time_features(state, history)
    users, movie_blobs, globals_state = packing.snapshot(state)
    store = RedisFeatureStore(client)
    items = [(names.user_features_key(1, u), b) for u, b in users.items()]
    items += [(names.movie_features_key(1, m), b) for m, b in movie_blobs.items()]
    items.append((names.globals_features_key(1), packing.pack_globals(globals_state)))
    store.write(items)
    store.activate(1)
    return state


def drain(settings: Settings, topic: str, expected: int, uid: str, timeout: float = 60.0) -> list[bytes]:
    consumer = Consumer(consumer_config(settings.kafka, f"test-drain-{uid}-{topic}"))
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < expected and time.monotonic() < deadline:
            values += [m.value() for m in consumer.consume(500, 0.5) if m.error() is None]
        values += [m.value() for m in consumer.consume(500, 2.0) if m.error() is None]  # anything extra?
    finally:
        consumer.close()
    return values


# A scorer process of its own per test (tests/integration/scorer_proc.py), and the servers it depends on.


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_scorer(
    topics: list[str], group: str, db: int, metrics_port: int, champion: tuple[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Run the platform's scorer on the test's topics (requests, predictions, dlq), Redis db and metrics port;
    with ``champion=(model name, events topic)`` it serves that model's @champion, else a fixed row model."""
    env = {**os.environ, "STREAMML_REDIS__DB": str(db), "STREAMML_SCORER__METRICS_PORT": str(metrics_port)}
    script = Path(__file__).with_name("scorer_proc.py")
    return subprocess.Popen([sys.executable, str(script), *topics, group, *(champion or ())], env=env)  # noqa: S603


def start_updater(settings: Settings, feedback: str, dlq: str, group: str, db: int) -> subprocess.Popen[bytes]:
    """Run the platform's feature updater on the test's feedback and dlq topics, consumer group and Redis db, signed
    in to Redis as the platform's updater is (its ACL user: WATCH and MULTI/EXEC on the features only)."""
    env = {**os.environ, **settings.redis.account_env("updater"), "STREAMML_REDIS__DB": str(db)}
    script = Path(__file__).with_name("updater_proc.py")
    return subprocess.Popen([sys.executable, str(script), feedback, dlq, group], env=env)  # noqa: S603


def wait_for_members(settings: Settings, group: str, members: int, timeout: float = 60.0) -> None:
    """Wait until ``group`` has exactly ``members`` members, each with at least one partition assigned."""
    from confluent_kafka.admin import AdminClient

    from streamml.streaming.clients import admin_config

    admin = AdminClient(admin_config(settings.kafka))
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while time.monotonic() < deadline:
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        seen = [len(m.assignment.topic_partitions) for m in description.members]
        if len(seen) == members and all(seen):
            return
        time.sleep(0.5)
    pytest.fail(f"group {group} did not settle at {members} members with partitions: partitions per member {seen}")


def scrape(port: int) -> dict[str, float]:
    """The scorer's /metrics as {sample name with labels: value}; empty while it does not answer."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
            text = response.read().decode()
    except OSError:
        return {}
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def _supervisor(settings: Settings) -> Any:
    from supervisor.xmlrpc import SupervisorTransport

    from streamml.paths import StackPaths

    socket_path = StackPaths.from_settings(settings).supervisor_socket
    transport = SupervisorTransport(None, None, serverurl=f"unix://{socket_path}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def stop_program(settings: Settings, program: str) -> None:
    """Stop a server of the local stack through supervisord (SIGTERM, a clean shutdown); returns once it exited."""
    _supervisor(settings).stopProcess(program, True)


def start_program(settings: Settings, program: str) -> None:
    """Start a stopped server of the local stack again and wait until it is healthy."""
    from streamml.runtime import health

    _supervisor(settings).startProcess(program, True)  # returns once supervisord calls it RUNNING
    health.wait_for([program], settings, timeout=120)


def count_results(client: redis.Redis, ids: list[str]) -> int | None:
    """How many of ``ids`` have a ``pred:{id}`` in Redis; None while Redis does not answer."""
    found = 0
    try:
        for start in range(0, len(ids), 5000):
            keys = [names.prediction_key(i) for i in ids[start : start + 5000]]
            found += sum(v is not None for v in client.mget(keys))
    except redis.ConnectionError:
        return None
    return found


def wait_for_results(
    client: redis.Redis, ids: list[str], at_least: int, timeout: float, scorer: subprocess.Popen[bytes] | None = None
) -> int:
    """Poll until ``at_least`` of ``ids`` have a result (or the timeout, or the scorer exited); return the count."""
    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline and (scorer is None or scorer.poll() is None):
        found = count_results(client, ids) or found
        if found >= at_least:
            break
        time.sleep(0.2)
    return found
