"""Online vs offline: replay the whole stream period through the running platform and compare the AUC of the live
predictions (joined with their feedback by the metrics aggregator, read from the metric log) with the offline
streaming-mode AUC that training logged for the same model version.

It first resets the online features of the active version to the batch snapshot (deletes ``feat:v<n>:*``, loads the
snapshot again), so the replay starts from the same state as the offline evaluation. Pace: ``--rate`` requests/s with
each true rating ``--feedback-delay`` s after the last request sharing its timestamp; online features equal the
offline ones when the delay is longer than the scorer's latency and shorter than the gap between requests
(1/rate) plus the updater's latency. Run it on a quiet stack with no other replay::

    .venv/bin/python -m bench.parity --rate 10 --feedback-delay 0.05
"""

from __future__ import annotations

import argparse
import csv
import time
import uuid
from collections.abc import Iterator

import numpy as np
from confluent_kafka import Producer
from rich.table import Table
from sklearn.metrics import roc_auc_score

from bench.harness import console
from streamml import names
from streamml.config import Settings
from streamml.features.materialize import materialize
from streamml.models import registry
from streamml.runtime.programs import StackPaths
from streamml.stores.features import RedisFeatureStore, redis_client
from streamml.streaming.app import stream_ratings
from streamml.streaming.clients import producer_config
from streamml.streaming.replayer import Pace, replay


def reset_online_features(settings: Settings, version: int) -> None:
    client = redis_client(settings.redis)
    deleted = 0
    for keys in _chunks(client.scan_iter(match=f"feat:v{version}:*", count=10_000), 10_000):
        deleted += client.unlink(*keys)
    counts = materialize(settings, version)
    console.print(f"reset feat:v{version}: deleted {deleted:,} keys, loaded {counts}")


def _chunks(items: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def joined_rows(log_path: str, prefix: str) -> list[dict[str, str]]:
    with open(log_path, newline="") as fh:
        return [row for row in csv.DictReader(fh) if row["id"].startswith(prefix)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--feedback-delay", type=float, default=0.05)
    ap.add_argument("--limit", type=int, default=None, help="replay only the first N ratings of the stream")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the last joins")
    args = ap.parse_args()

    settings = Settings()
    version = RedisFeatureStore(redis_client(settings.redis)).current_version()
    if version is None:
        raise SystemExit("no active feature version; run movielens_training first")
    reset_online_features(settings, version)
    run = f"parity{uuid.uuid4().hex[:6]}"
    log_path = str(StackPaths.from_settings(settings).state / "metrics" / "metric_log.csv")
    producer = Producer(producer_config(settings.kafka, client_id="bench-parity"))
    t0 = time.monotonic()
    sent = replay(
        stream_ratings(settings, version),
        producer,
        Pace(rate=args.rate),
        feedback_delay=args.feedback_delay,
        run_id=run,
        limit=args.limit,
        on_progress=lambda n: console.print(f"  {n:,} requests sent ({time.monotonic() - t0:.0f} s)"),
    )
    deadline = time.monotonic() + args.timeout
    while len(rows := joined_rows(log_path, run + "-")) < sent and time.monotonic() < deadline:
        time.sleep(5)
    y = np.array([float(r["y_true"]) for r in rows])
    p = np.array([float(r["y_pred"]) for r in rows])
    lat = np.array([float(r["latency_ms"]) for r in rows])
    model_versions = sorted({r["model_version"] for r in rows})
    offline = {
        v: registry.client(settings)
        .get_run(registry.client(settings).get_model_version(names.MODEL_NAME, v).run_id or "")
        .data.metrics
        for v in model_versions
    }
    table = Table(title=f"online vs offline, run {run}: rate {args.rate}/s, feedback delay {args.feedback_delay} s")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("requests sent / joined", f"{sent:,} / {len(rows):,}")
    table.add_row("model version(s) serving", ", ".join(model_versions))
    online_auc = roc_auc_score(y, p)
    table.add_row("online AUC (every joined event)", f"{online_auc:.4f}")
    table.add_row("online accuracy", f"{np.mean((p >= 0.5) == (y >= 0.5)):.4f}")
    for v, metrics in offline.items():
        table.add_row(f"offline streaming AUC, v{v}", f"{metrics.get('streaming_auc', float('nan')):.4f}")
        table.add_row(f"offline streaming accuracy, v{v}", f"{metrics.get('streaming_accuracy', float('nan')):.4f}")
        table.add_row(f"|online - offline| AUC, v{v}", f"{abs(online_auc - metrics.get('streaming_auc', np.nan)):.4f}")
    table.add_row("latency p50 / p99 ms", f"{np.percentile(lat, 50):.1f} / {np.percentile(lat, 99):.1f}")
    table.add_row("wall time", f"{time.monotonic() - t0:.0f} s")
    console.print(table)


if __name__ == "__main__":
    main()
