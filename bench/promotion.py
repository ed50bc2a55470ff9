"""How long a promotion made outside the platform takes to reach a running scorer, idle and busy.

A scorer process (the platform's :func:`~streamml.streaming.runners.run_scorer`, its own topics ``bench.<uuid>.*`` and
Redis database ``--redis-db``, into which the current feature version is copied) serves ``@champion`` of a model of
the bench's own: two versions of a small logistic regression, or of ``--copy-of`` (e.g. the platform's champion).
The bench moves the alias with the bare MLflow client (no model event: as a user of the MLflow UI would)
``--changes`` times and measures, for each change at ``t0``:

- reload: when the scorer's ``streamml_scorer_model_version`` gauge shows the new version (polled every 20 ms);
- busy (requests at ``--rate``/s throughout): the last batch scored by the old version and the first by the new one,
  from the predictions' ``scored_at`` (stamped per batch);
- idle (no requests around the change; a burst ``--idle-wait`` seconds later): how many predictions of the burst the
  old version scored (should be none).

    python -m bench.promotion --changes 10 --rate 200 [--copy-of movielens-like@champion]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from typing import Any

import numpy as np

from bench.harness import console
from bench.scorer import copy_features, request_rows
from streamml.config import Settings, get_settings
from streamml.features import spec

LIMIT_SECONDS = 5.0

SCORER = """
import sys
from streamml.config import get_settings
from streamml.logging import configure_logging
from streamml.streaming.runners import ScorerTopics, run_scorer
requests, predictions, dlq, shadow, events, name = sys.argv[1:]
configure_logging("WARNING")
run_scorer(get_settings(), 200, topics=ScorerTopics(requests, predictions, dlq, events, shadow), model_name=name,
           group=f"{requests}.scorer")
"""


def register(settings: Settings, name: str, copy_of: str | None) -> None:
    """Two signed versions of ``name``: copies of the registered ``copy_of`` (``model@alias``), or a small model."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from streamml.models.integrity import sign_version
    from streamml.models.pyfunc import LikeModel

    tracking, key = settings.mlflow.tracking_uri, settings.mlflow.signing_key.get_secret_value()
    mlflow.set_tracking_uri(tracking)
    client = mlflow.MlflowClient()

    def register_signed(uri: str) -> None:
        sign_version(client, tracking, name, mlflow.register_model(uri, name).version, key)

    if copy_of is not None:
        model, alias = copy_of.split("@")
        source = client.get_model_version_by_alias(model, alias)
        for _ in range(2):
            register_signed(source.source)
        return
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, spec.N_FEATURES))
    estimator = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    mlflow.set_experiment(name)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=LikeModel(estimator), pip_requirements=["scikit-learn"]
        )
    for _ in range(2):
        register_signed(info.model_uri)


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gauge(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:  # noqa: S310
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("streamml_scorer_model_version "):
            return float(line.split()[1])
    return None


class Traffic:
    """Sends requests at ``rate``/s while ``on`` is set, and collects (scored_at, model_version) of predictions."""

    def __init__(self, settings: Settings, topics: dict[str, str], rows: list[tuple[int, int, int]]) -> None:
        from confluent_kafka import Consumer, Producer

        from streamml.streaming.clients import consumer_config, producer_config

        self.producer = Producer(producer_config(settings.kafka))
        self.consumer = Consumer(consumer_config(settings.kafka, f"{topics['requests']}.reader"))
        self.consumer.subscribe([topics["predictions"]])
        self.topics, self.rows = topics, rows
        self.on, self.stop = threading.Event(), threading.Event()
        self.seen: list[tuple[float, str]] = []
        self.sent = 0
        self.rate = 0.0

    def send(self, n: int) -> None:
        from streamml.streaming.messages import RatingRequest

        for _ in range(n):
            user, movie, ts = self.rows[self.sent % len(self.rows)]
            request = RatingRequest(
                request_id=f"{self.topics['requests']}-{self.sent}", user_id=user, movie_id=movie, event_ts=ts,
                sent_at=time.time(),
            )  # fmt: skip
            self.producer.produce(self.topics["requests"], key=str(user), value=request.encode())
            self.sent += 1
        self.producer.poll(0)

    def produce_forever(self) -> None:
        while not self.stop.is_set():
            if self.on.is_set():
                self.send(max(1, int(self.rate / 50)))
            time.sleep(0.02)

    def collect_forever(self) -> None:
        import json

        while not self.stop.is_set():
            for m in self.consumer.consume(500, timeout=0.2):
                if m.error() is None:
                    p = json.loads(m.value())
                    self.seen.append((p["scored_at"], p["model_version"]))


def wait_for(condition: Any, seconds: float) -> float | None:
    start = time.time()
    while time.time() - start < seconds:
        if condition():
            return time.time()
        time.sleep(0.02)
    return None


def main() -> int:  # noqa: PLR0915 - one scenario, top to bottom
    parser = argparse.ArgumentParser(description="Delay from an alias move to the scorer serving it.")
    parser.add_argument("--changes", type=int, default=10, help="alias moves per phase (busy, idle)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second in the busy phase")
    parser.add_argument("--idle-wait", type=float, default=6.0, help="seconds between an idle move and the burst")
    parser.add_argument("--copy-of", help="serve copies of this registered model (e.g. movielens-like@champion)")
    parser.add_argument("--redis-db", type=int, default=13, help="scratch Redis database (flushed at the end)")
    args = parser.parse_args()
    if args.redis_db == 0:
        parser.error("--redis-db must be a scratch database")
    os.environ["STREAMML_REDIS__DB"] = str(args.redis_db)
    from mlflow import MlflowClient

    from streamml.stores.redis_client import redis_client
    from streamml.streaming.clients import ensure_topics

    settings = get_settings()
    uid = uuid.uuid4().hex[:8]
    name = f"bench-promotion-{uid}"
    topics = {k: f"bench.{uid}.{k}" for k in ("requests", "predictions", "dlq", "shadow", "events")}
    scratch = redis_client(settings.redis)
    scratch.flushdb()
    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    scorer: subprocess.Popen[bytes] | None = None
    traffic: Traffic | None = None
    try:
        version, _ = copy_features(settings, 0)
        ensure_topics(settings.kafka, topics.values(), partitions=3)
        register(settings, name, args.copy_of)
        client.set_registered_model_alias(name, "champion", "1")
        port = free_port()
        env = {**os.environ, "STREAMML_SCORER__METRICS_PORT": str(port), "STREAMML_SCORER__SHADOW": "false"}
        command = [
            sys.executable,
            "-c",
            SCORER,
            *(topics[k] for k in ("requests", "predictions", "dlq", "shadow", "events")),
            name,
        ]
        scorer = subprocess.Popen(command, env=env)  # noqa: S603
        if wait_for(lambda: gauge(port) == 1.0, 120) is None:
            raise SystemExit("the scorer did not serve version 1 within 2 minutes")
        traffic = Traffic(settings, topics, request_rows(settings, version, 5000))
        threads = [threading.Thread(target=f, daemon=True) for f in (traffic.produce_forever, traffic.collect_forever)]
        for t in threads:
            t.start()
        traffic.rate = args.rate
        busy: list[dict[str, float]] = []
        idle: list[dict[str, float]] = []
        current = "1"
        traffic.on.set()
        time.sleep(3)
        for phase, rows in (("busy", busy), ("idle", idle)):
            for _ in range(args.changes):
                new = "2" if current == "1" else "1"
                if phase == "idle":
                    traffic.on.clear()
                    time.sleep(2)
                t0 = time.time()
                client.set_registered_model_alias(name, "champion", new)
                seen = wait_for(lambda v=new: gauge(port) == float(v), 60)
                row = {"reload_s": (seen or float("nan")) - t0}
                if phase == "busy":
                    time.sleep(3)
                    after = [(at, v) for at, v in traffic.seen if at >= t0]
                    old = [at for at, v in after if v == current]
                    first_new = min((at for at, v in after if v == new), default=float("nan"))
                    row |= {"last_old_s": (max(old) - t0) if old else 0.0, "first_new_s": first_new - t0}
                else:
                    time.sleep(max(0.0, args.idle_wait - (time.time() - t0)))
                    before = len(traffic.seen)
                    burst_at = time.time()
                    traffic.send(200)
                    wait_for(lambda b=before: len(traffic.seen) >= b + 200, 30)
                    burst = [v for at, v in traffic.seen[before:] if at >= burst_at]
                    row |= {"burst_old": float(sum(v == current for v in burst)), "burst": float(len(burst))}
                rows.append(row)
                console.print(f"{phase} move to v{new}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
                current = new
        for phase, rows in (("busy", busy), ("idle", idle)):
            for key in rows[0]:
                values = np.array([r[key] for r in rows])
                p50, p99 = np.nanpercentile(values, 50), np.nanpercentile(values, 99)
                console.print(f"{phase:4s} {key:12s} p50 {p50:6.2f}  p99 {p99:6.2f}  max {np.nanmax(values):6.2f}")
        late = [r["last_old_s"] for r in busy if r["last_old_s"] > LIMIT_SECONDS]
        console.print(
            f"busy moves with an old-version batch later than {LIMIT_SECONDS:g} s after the move: {len(late)}"
        )
        console.print(f"idle bursts scored by the old version: {sum(r['burst_old'] for r in idle):.0f} predictions")
    finally:
        if traffic is not None:
            traffic.stop.set()
        if scorer is not None:
            scorer.terminate()
            scorer.wait(30)
        if client.search_registered_models(f"name='{name}'"):
            client.delete_registered_model(name)
        from confluent_kafka.admin import AdminClient

        from streamml.streaming.clients import admin_config

        admin = AdminClient(admin_config(settings.kafka))
        for future in admin.delete_topics(list(topics.values()), operation_timeout=30).values():
            future.result(30)
        scratch.flushdb()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
