"""Feature-updater throughput on a real Redis: this tree's updater side by side with another revision's.

Each run loads the history snapshot of ml-latest-small as feature version 1 (not timed), then times the updater's
handler and its sink (the MULTI/EXEC write), exactly as the worker calls them, over the stream period's feedback in
batches: parse, one read round trip, the incremental update, one transaction. Kafka is left out (its cost is the
same for both revisions; ``bench.scorer`` measures the consume path). Runs alternate between the two revisions, each
in a fresh process with its own source tree on ``PYTHONPATH``; the baseline's tree is ``git archive`` of
``--baseline-rev``. Redis database ``STREAMML_REDIS__DB`` is flushed before each run; database 0 (the platform's)
is refused.

    STREAMML_REDIS__DB=14 STREAMML_MOVIELENS_DIR=... python -m bench.updater --baseline-rev a0a73e4 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import Row, console, print_table

TARGET_EVENTS_PER_SECOND = 20_000
REPO = Path(__file__).resolve().parent.parent


class _Msg:
    """The parts of a confluent-kafka message the handler reads."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b"k"

    def topic(self) -> str:
        return "feedback.v1"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


def feedback_messages(ratings: Any) -> list[_Msg]:
    """Each rating of ``ratings`` (a MovieLens frame) as a feedback message, at offsets 0, 1, ..."""
    from streamml.streaming.messages import Feedback

    return [
        _Msg(Feedback(request_id=f"r{i}", user_id=int(r.userId), movie_id=int(r.movieId), rating=float(r.rating),
                      event_ts=int(r.timestamp)).encode(), i)
        for i, r in enumerate(ratings.itertuples())
    ]  # fmt: skip


def load_snapshot() -> tuple[Any, Any, dict[int, bytes], dict[int, bytes]]:
    """Flush Redis database ``STREAMML_REDIS__DB`` and load ml-latest-small's history snapshot into it as feature
    version 1 (active); return the store, the stream period's ratings and the user and movie blobs."""
    from streamml import names
    from streamml.config import Settings
    from streamml.data import movielens
    from streamml.features import packing, spec
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client

    settings = Settings()
    if settings.redis.db == 0:
        raise SystemExit("refusing Redis database 0 (the platform's); set STREAMML_REDIS__DB")
    client = redis_client(settings.redis)
    client.flushdb()
    ratings, movies = movielens.load(Path(os.environ["STREAMML_MOVIELENS_DIR"]))
    history, stream, _ = movielens.time_split(ratings)
    state = spec.FeatureState.from_movies(movies)
    spec.point_in_time_features(state, history)
    users, movie_blobs, globals_state = packing.snapshot(state)
    store = RedisFeatureStore(client)
    items = [(names.user_features_key(1, u), b) for u, b in users.items()]
    items += [(names.movie_features_key(1, m), b) for m, b in movie_blobs.items()]
    items.append((names.globals_features_key(1), packing.pack_globals(globals_state)))
    store.write(items)
    store.activate(1)
    return store, stream, users, movie_blobs


def measure(batch: int, warmup: int) -> dict[str, Any]:
    """One run of the updater of whatever ``streamml`` is importable; prints nothing, returns the figures. The first
    ``warmup`` messages are processed untimed (a long-running updater has its code paths and connection warm)."""
    from streamml.streaming.updater import FeatureUpdaterHandler

    store, stream, users, movie_blobs = load_snapshot()
    messages = feedback_messages(stream)
    handler = FeatureUpdaterHandler(store)

    def run(part: list[_Msg]) -> float:
        started = time.perf_counter()
        for start in range(0, len(part), batch):
            result = handler(part[start : start + batch])
            if result.sink is not None:
                result.sink()
        return time.perf_counter() - started

    run(messages[:warmup])
    seconds = run(messages[warmup:])
    applied = store.applied_count(1)
    blob_bytes = {
        "user": sum(len(b) for b in users.values()) / max(len(users), 1),
        "movie": sum(len(b) for b in movie_blobs.values()) / max(len(movie_blobs), 1),
    }
    store.client.flushdb()
    timed = len(messages) - warmup
    return {"events": timed, "total": len(messages), "applied": applied, "seconds": seconds, "blob_bytes": blob_bytes}


def _tree(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=REPO, capture_output=True, check=True).stdout  # noqa: S603, S607
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)  # noqa: S603, S607
    return into / "src"


def _run(src: Path, batch: int, warmup: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{REPO}"}
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "bench.updater", "--measure", "--batch", str(batch), "--warmup", str(warmup)],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-rev", default="a0a73e4", help="revision whose updater is the baseline")
    ap.add_argument("--runs", type=int, default=3, help="runs of each revision, alternating")
    ap.add_argument("--batch", type=int, default=500, help="feedback messages per handler call (the worker's batch)")
    ap.add_argument("--warmup", type=int, default=2000, help="first feedback messages processed untimed")
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.batch, args.warmup)))
        return
    rows: dict[str, Row] = {}
    blobs: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="streamml-bench-updater-") as tmp:
        sources = {f"baseline {args.baseline_rev}": _tree(args.baseline_rev, Path(tmp)), "this tree": REPO / "src"}
        for _ in range(args.runs):
            for name, src in sources.items():
                figures = _run(src, args.batch, args.warmup)
                if figures["applied"] != figures["total"]:
                    raise SystemExit(f"{name}: applied {figures['applied']} of {figures['total']} events")
                rows.setdefault(name, Row(name, figures["events"])).seconds.append(figures["seconds"])
                blobs[name] = figures["blob_bytes"]
    print_table(
        f"feature updater, batch {args.batch} (target {TARGET_EVENTS_PER_SECOND:,}/s)", list(rows.values()), "events"
    )
    base, current = rows.values()
    console.print(f"ratio this tree / baseline: {current.rate / base.rate:.2f}; mean blob bytes: {blobs}")
    if args.json:
        print(
            json.dumps(
                {
                    name: {"rate": row.rate, "spread": row.spread(), "blob_bytes": blobs[name]}
                    for name, row in rows.items()
                }
            )
        )


if __name__ == "__main__":
    main()
