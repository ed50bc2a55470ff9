"""Online vs offline, per request and in aggregate: replay the stream period through the running platform, join every
online prediction to the offline point-in-time features and score of its rating row (``streamml parity``), and
compare the online AUC with the offline streaming-mode AUC that training logged for the same model version.

It resets the online features of the active version to the batch snapshot first, so the replay starts from the same
state as the offline evaluation. Exits 1 on any real mismatch (stale and ahead predictions are timing and are
reported apart). Run it on a quiet stack with no other replay::

    .venv/bin/python -m bench.parity --rate 20 --feedback-delay 0.02 --limit 3000
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from rich.table import Table
from sklearn.metrics import roc_auc_score

from bench.harness import console
from streamml import names
from streamml.config import Settings
from streamml.features.batch import read_part
from streamml.stores.features import RedisFeatureStore
from streamml.stores.mlflow_client import client as mlflow_client
from streamml.stores.redis_client import redis_client
from streamml.verification.parity import replay_and_compare


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--feedback-delay", type=float, default=0.02)
    ap.add_argument("--limit", type=int, default=None, help="replay only the first N ratings of the stream")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the last predictions")
    args = ap.parse_args()

    settings = Settings()
    t0 = time.monotonic()
    report, predictions = replay_and_compare(
        settings, args.rate, args.feedback_delay, args.limit, args.timeout, say=console.print
    )
    version = RedisFeatureStore(redis_client(settings.redis)).current_version()
    stream = read_part(settings, int(version or 0), "stream", ["userId", "movieId", "timestamp", "rating"]).to_pydict()
    rating = {
        (u, m, t): r
        for u, m, t, r in zip(stream["userId"], stream["movieId"], stream["timestamp"], stream["rating"], strict=True)
    }
    y = np.array([rating[(p.user_id, p.movie_id, p.event_ts)] >= 4.0 for p in predictions], dtype=float)
    s = np.array([p.score for p in predictions])
    lat = np.array([(p.scored_at - p.sent_at) * 1000 for p in predictions])
    table = Table(title=f"online vs offline: rate {args.rate}/s, feedback delay {args.feedback_delay} s")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("predictions compared", f"{report.compared:,}")
    table.add_row("identical (features and score, 1e-9)", f"{report.identical:,} ({report.identical_share:.2%})")
    table.add_row("stale / ahead / real mismatch", f"{report.stale:,} / {report.ahead:,} / {report.mismatch:,}")
    online_auc = roc_auc_score(y, s)
    table.add_row("online AUC (every prediction)", f"{online_auc:.4f}")
    client = mlflow_client(settings.mlflow)
    for v in sorted({p.model_version for p in predictions}):
        metrics = client.get_run(client.get_model_version(names.MODEL_NAME, v).run_id or "").data.metrics
        table.add_row(f"offline streaming AUC, v{v}", f"{metrics.get('streaming_auc', float('nan')):.4f}")
    table.add_row("latency p50 / p99 ms", f"{np.percentile(lat, 50):.1f} / {np.percentile(lat, 99):.1f}")
    table.add_row("wall time", f"{time.monotonic() - t0:.0f} s")
    console.print(table)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
