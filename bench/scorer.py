"""Scoring throughput and open-loop latency of one scorer process, on the real Kafka and Redis of the local stack.

Throughput, each variant in its own process pinned to one core (``--cpu``), the same model (loaded with
:func:`streamml.models.pyfunc.load_scorer`, not timed):

- platform: the real :class:`~streamml.streaming.worker.Worker` + :class:`~streamml.streaming.scorer.ScorerHandler`
  consuming pre-produced requests from a bench topic (3 partitions), first message to last commit;
- baseline: the per-message shape the platform replaces (poll one message, ``json.loads``, two Redis GETs, a one-row
  pandas DataFrame, ``predict_proba``, SET, produce, commit), on a smaller count;
- ceiling: the handler's batch code without Kafka (``ScorerHandler.score`` + the Redis writes; and the whole handler
  call on in-memory messages).

Latency, open loop: a producer process sends requests at their intended times (``sent_at`` = intended time, late
sends are not re-timed), the platform scorer consumes, a collector reads the predictions topic and polls Redis for
a sample of ``pred:{id}`` keys. Latency = time visible minus intended send time.

Everything goes to topics ``bench.<uuid>.*`` (deleted at the end) and Redis database ``--redis-db`` (default 14,
flushed at the end; database 0 is refused), into which the current feature version is first copied from db 0.

    python -m bench.scorer --requests 200000 --baseline-requests 5000 --rates 1000,10000 --seconds 25
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing as mp
import os
import platform
import pstats
import resource
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.table import Table

from bench.harness import console
from streamml import names
from streamml.config import Settings, get_settings
from streamml.streaming.worker import Worker

TARGET_EVENTS_PER_SECOND = 40_000
TARGET_RATIO = 50
TARGET_P99_MS = 30.0
PREDICTION_TTL = 3600
_ctx = mp.get_context("spawn")  # children must not inherit the parent's Kafka clients (fork is unsafe with them)


# Requests: the stream part of the feature version, cycled, with unique ids.


def request_rows(settings: Settings, version: int, n: int) -> list[tuple[int, int, int]]:
    """``n`` (user, movie, event_ts) triples from the stream part, cycling when ``n`` exceeds it."""
    from streamml.features.batch import read_part

    table = read_part(settings, version, "stream", columns=["userId", "movieId", "timestamp"])
    rows = list(zip(*(table.column(c).to_pylist() for c in ("userId", "movieId", "timestamp")), strict=True))
    return [rows[i % len(rows)] for i in range(n)]


def request_payloads(rows: list[tuple[int, int, int]], prefix: str, sent_at: float) -> Iterator[tuple[str, bytes]]:
    from streamml.streaming.messages import RatingRequest

    for i, (user, movie, ts) in enumerate(rows):
        request = RatingRequest(request_id=f"{prefix}-{i}", user_id=user, movie_id=movie, event_ts=ts, sent_at=sent_at)
        yield str(user), request.encode()


# Child processes. Each pins itself first, so librdkafka's threads (created later) inherit the affinity.


def _pin(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _serving_model(settings: Settings, model_uri: str) -> Any:
    from streamml.models.pyfunc import load_scorer
    from streamml.streaming.scorer import ServingModel

    parts = model_uri.removeprefix("models:/").split("/")
    name, version = (parts[0], parts[1]) if len(parts) == 2 else (model_uri, "0")
    return ServingModel(name, version, load_scorer(model_uri, settings.mlflow.tracking_uri))


class BenchWorker(Worker):
    """The platform's worker, instrumented: stops after ``limit`` messages, a deadline or ``stop``."""

    def __init__(
        self,
        *args: Any,
        limit: int,
        deadline: float,
        stop: Any = None,
        ready: Any = None,
        counter: Any = None,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        self.limit, self.deadline, self.stop_event, self.ready = limit, deadline, stop, ready
        self.counter = counter  # a shared count of several workers (bench.scale_out), added to after each batch
        self.count = 0
        self.first: float | None = None
        self.last = 0.0
        self.cpu_first = 0.0
        self.profiler: cProfile.Profile | None = None
        self.on_idle = self._idle

    def _should_stop(self) -> bool:
        stopped = self.stop_event is not None and self.stop_event.is_set()
        return self.count >= self.limit or time.monotonic() > self.deadline or stopped

    def _idle(self) -> None:
        if self.ready is not None and not self.ready.is_set() and self.consumer.assignment():
            self.ready.set()
        if self._should_stop():
            self.running = False

    def process(self, messages: Any) -> None:
        if self.first is None:
            self.first, self.cpu_first = time.perf_counter(), _cpu_seconds()
            if self.profiler is not None:
                self.profiler.enable()
        super().process(messages)
        self.count += len(messages)
        if self.counter is not None:
            with self.counter.get_lock():
                self.counter.value += len(messages)
        self.last = time.perf_counter()
        if self._should_stop():
            self.running = False


def run_platform(cfg: dict[str, Any], results: Any, ready: Any = None, stop: Any = None) -> None:
    """Variant (a): Worker + ScorerHandler on Kafka, one process."""
    _pin(cfg["cpu"])
    from confluent_kafka import Consumer, Producer

    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.clients import consumer_config, producer_config
    from streamml.streaming.scorer import ScorerHandler

    settings = get_settings()
    model = _serving_model(settings, cfg["model_uri"])
    challenger = _serving_model(settings, cfg["shadow_uri"]) if cfg.get("shadow_uri") else None
    handler = ScorerHandler(
        RedisFeatureStore(redis_client(settings.redis)),
        lambda: model,
        prediction_ttl_seconds=PREDICTION_TTL,
        predictions_topic=cfg["predictions"],
        dlq_topic=cfg["dlq"],
        shadow=None if challenger is None else lambda: challenger,
        shadow_topic=cfg["shadow"],
    )
    worker = BenchWorker(
        Consumer(consumer_config(settings.kafka, cfg["group"], client_id=cfg["group"])),
        Producer(producer_config(settings.kafka, client_id=cfg["group"])),
        [cfg["requests"]],
        handler,
        batch_size=cfg["batch"],
        poll_timeout=cfg["poll_timeout"],
        idle_timeout=cfg["idle_timeout"],
        limit=cfg["limit"],
        deadline=time.monotonic() + cfg["max_seconds"],
        stop=stop,
        ready=ready,
        counter=cfg.get("counter"),
    )
    if cfg.get("profile"):
        worker.profiler = cProfile.Profile()
    # CPU counts from the first message; a member that gets none counts from here (its idle loop), not its start-up
    worker.cpu_first = _cpu_seconds()
    worker.run()
    profile = ""
    if worker.profiler is not None:
        worker.profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(worker.profiler, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(
            r"streamml|redis/client|redis/commands/core|cimpl|sklearn.*fit_|_predict_iter", 30
        )
        profile = out.getvalue()
    seconds = worker.last - worker.first if worker.first is not None else 0.0
    wall = time.perf_counter() - worker.first if worker.first is not None else 0.0  # to the end, idle time too
    cpu = _cpu_seconds() - worker.cpu_first
    results.put({"count": worker.count, "seconds": seconds, "wall": wall, "cpu": cpu, "profile": profile,
                 "first": worker.first, "last": worker.last})  # fmt: skip


def run_baseline(cfg: dict[str, Any], results: Any) -> None:
    """Variant (b): one message at a time, one round trip per step, as the replaced platform did; its model input a
    one-row pandas DataFrame (as it was) or, with ``cfg["numpy"]``, a one-row numpy array."""
    _pin(cfg["cpu"])
    import mlflow
    import pandas as pd
    from confluent_kafka import Consumer, Producer

    from streamml.features import packing, spec
    from streamml.models.pyfunc import like_column
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.clients import consumer_config, producer_config

    # The estimator was fitted on arrays; a DataFrame makes sklearn warn on every call. The check still runs.
    warnings.filterwarnings("ignore", message="X has feature names")
    settings = get_settings()
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    estimator = mlflow.pyfunc.load_model(cfg["model_uri"]).unwrap_python_model().estimator
    column = like_column(estimator)
    r = redis_client(settings.redis)
    version = int(r.get(names.FEATURE_VERSION_CURRENT) or 0)
    globals_blob = r.get(names.globals_features_key(version))
    globals_state = packing.unpack_globals(globals_blob) if globals_blob else spec.GlobalState()
    consumer = Consumer(consumer_config(settings.kafka, cfg["group"], client_id=cfg["group"]))
    producer = Producer(producer_config(settings.kafka, client_id=cfg["group"]))
    consumer.subscribe([cfg["requests"]])
    deadline = time.monotonic() + cfg["max_seconds"]
    count, first, cpu_first = 0, None, 0.0
    while count < cfg["limit"] and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error() is not None:
            continue
        if first is None:
            first, cpu_first = time.perf_counter(), _cpu_seconds()
        req = json.loads(msg.value())
        user_blob = r.get(names.user_features_key(version, req["user_id"]))
        movie_blob = r.get(names.movie_features_key(version, req["movie_id"]))
        user = packing.unpack_user(user_blob) if user_blob else None
        movie = packing.unpack_movie(movie_blob) if movie_blob else None
        vector, cold = spec.features_from_states(user, movie, globals_state, req["event_ts"])
        row = np.asarray([vector]) if cfg.get("numpy") else pd.DataFrame([vector], columns=list(spec.FEATURE_NAMES))
        score = float(estimator.predict_proba(row)[0, column])
        prediction = {
            **req,
            "score": score,
            "label": int(score >= 0.5),
            "model_version": cfg["model_uri"],
            "feature_version": version,
            "cold_start": cold,
            "scored_at": time.time(),
        }
        value = json.dumps(prediction).encode()
        r.set(names.prediction_key(req["request_id"]), value, ex=PREDICTION_TTL)
        producer.produce(cfg["predictions"], key=msg.key(), value=value)
        producer.poll(0)
        consumer.commit(message=msg, asynchronous=False)
        count += 1
    producer.flush(30)
    last = time.perf_counter()
    consumer.close()
    seconds = last - first if first is not None else 0.0
    results.put({"count": count, "seconds": seconds, "cpu": _cpu_seconds() - cpu_first})


@dataclass
class _Message:
    """Just enough of confluent_kafka.Message for the handler, to run it without Kafka."""

    payload: bytes
    key_: str
    index: int

    def value(self) -> bytes:
        return self.payload

    def key(self) -> str:
        return self.key_

    def topic(self) -> str:
        return "in-memory"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.index

    def error(self) -> None:
        return None


def run_ceiling(cfg: dict[str, Any], results: Any) -> None:
    """Variant (c): the batch code with no Kafka: score + Redis writes, then the whole handler call + its sink."""
    _pin(cfg["cpu"])
    from streamml.stores.features import RedisFeatureStore
    from streamml.stores.redis_client import redis_client
    from streamml.streaming.messages import Prediction, RatingRequest, parse
    from streamml.streaming.scorer import ScorerHandler

    settings = get_settings()
    model = _serving_model(settings, cfg["model_uri"])
    store = RedisFeatureStore(redis_client(settings.redis))
    handler = ScorerHandler(store, lambda: model, prediction_ttl_seconds=PREDICTION_TTL)
    rows = request_rows(settings, cfg["feature_version"], cfg["limit"])
    payloads = list(request_payloads(rows, f"{cfg['run']}-ceiling", time.time()))
    batch = cfg["batch"]
    requests = [parse(RatingRequest, value) for _, value in payloads]
    out: dict[str, Any] = {"count": len(requests)}

    cpu0, start = _cpu_seconds(), time.perf_counter()
    for i in range(0, len(requests), batch):
        predictions = [p for p in handler.score(requests[i : i + batch]) if isinstance(p, Prediction)]
        store.write_predictions([(names.prediction_key(p.request_id), p.encode()) for p in predictions], PREDICTION_TTL)
    out["score_seconds"], out["score_cpu"] = time.perf_counter() - start, _cpu_seconds() - cpu0

    messages = [_Message(value, key, i) for i, (key, value) in enumerate(payloads)]
    cpu0, start = _cpu_seconds(), time.perf_counter()
    for i in range(0, len(messages), batch):
        result = handler(messages[i : i + batch])
        assert result.sink is not None  # noqa: S101 - every request is valid here
        result.sink()
    out["handler_seconds"], out["handler_cpu"] = time.perf_counter() - start, _cpu_seconds() - cpu0
    results.put(out)


def run_open_loop_producer(cfg: dict[str, Any], start_at: Any, results: Any) -> None:
    """Send ``rate`` requests/s for ``seconds``, each stamped with and sent at its intended time (open loop)."""
    _pin(cfg["cpu"])
    from confluent_kafka import Producer

    from streamml.streaming.clients import producer_config
    from streamml.streaming.messages import RatingRequest

    settings = get_settings()
    rate = cfg["rate"]
    rows = request_rows(settings, cfg["feature_version"], int(rate * cfg["seconds"]))
    producer = Producer(producer_config(settings.kafka, client_id=f"{cfg['run']}-producer"))
    start = time.time() + 0.5
    start_at.value = start
    lateness = np.empty(len(rows))
    for i, (user, movie, ts) in enumerate(rows):
        due = start + i / rate
        now = time.time()
        if due > now:
            time.sleep(due - now)
        request = RatingRequest(
            request_id=f"{cfg['prefix']}-{i}", user_id=user, movie_id=movie, event_ts=ts, sent_at=due
        )
        while True:
            try:
                producer.produce(cfg["requests"], key=str(user), value=request.encode())
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
        lateness[i] = time.time() - due
    producer.flush(30)
    results.put(
        {
            "sent": len(rows),
            "late_p50": float(np.percentile(lateness, 50)),
            "late_p99": float(np.percentile(lateness, 99)),
            "elapsed": time.time() - start,
        }
    )


def run_collector(cfg: dict[str, Any], start_at: Any, ready: Any, results: Any) -> None:
    """Read predictions as they become visible; poll Redis for a sample of ``pred:{id}`` keys."""
    _pin(cfg["cpu"])
    from confluent_kafka import Consumer

    from streamml.stores.redis_client import redis_client
    from streamml.streaming.clients import consumer_config

    settings = get_settings()
    r = redis_client(settings.redis)
    consumer = Consumer(consumer_config(settings.kafka, f"{cfg['run']}-collector-{cfg['rate']}"))
    consumer.subscribe([cfg["predictions"]])
    while not consumer.assignment():
        consumer.poll(0.1)
    ready.set()
    rate, expected, every = cfg["rate"], int(cfg["rate"] * cfg["seconds"]), cfg["sample_every"]
    topic_ms: list[float] = []
    scored_ms: list[float] = []
    redis_ms: list[float] = []
    pending: dict[str, float] = {}
    next_sample = 0
    deadline = float("inf")  # set once the producer has published its start time
    while len(topic_ms) < expected and time.time() < deadline:
        for m in consumer.consume(num_messages=2000, timeout=0.001):
            now = time.time()
            if m.error() is None:
                p = json.loads(m.value())
                topic_ms.append((now - p["sent_at"]) * 1000)
                scored_ms.append((p["scored_at"] - p["sent_at"]) * 1000)
        start = start_at.value
        if start > 0:
            deadline = start + cfg["seconds"] + cfg["drain_seconds"]
            now = time.time()
            while next_sample < expected and start + next_sample / rate <= now:
                pending[names.prediction_key(f"{cfg['prefix']}-{next_sample}")] = start + next_sample / rate
                next_sample += every
            if pending:
                keys = list(pending)
                pipe = r.pipeline(transaction=False)
                for key in keys:
                    pipe.exists(key)
                flags = pipe.execute()
                seen = time.time()
                for key, flag in zip(keys, flags, strict=True):
                    if flag:
                        redis_ms.append((seen - pending.pop(key)) * 1000)
    consumer.close()
    results.put({"topic": topic_ms, "scored": scored_ms, "redis": redis_ms, "expected": expected})


# The parent: setup, the runs, the tables, cleanup.


def copy_features(settings: Settings, source_db: int) -> tuple[int, int]:
    """Copy the current feature version's blobs from ``source_db`` (read only) into the bench database."""
    from streamml.stores.redis_client import redis_client

    source = redis_client(settings.redis.model_copy(update={"db": source_db}))
    target = redis_client(settings.redis)
    version = int(source.get(names.FEATURE_VERSION_CURRENT) or 0)
    if not version:
        raise SystemExit(f"no {names.FEATURE_VERSION_CURRENT} in Redis db {source_db}")
    keys = list(source.scan_iter(match=f"feat:v{version}:*", count=10_000))
    for i in range(0, len(keys), 5000):
        chunk = keys[i : i + 5000]
        blobs = {k: v for k, v in zip(chunk, source.mget(chunk), strict=True) if v is not None}  # some expire
        if blobs:
            target.mset(blobs)
    target.set(names.FEATURE_VERSION_CURRENT, str(version))
    return version, len(keys)


def _child(target: Any, *args: Any, timeout: float) -> Any:
    """Run ``target`` in a spawned process and return what it put on its queue."""
    results = _ctx.Queue()
    proc = _ctx.Process(target=target, args=(*args, results))
    proc.start()
    try:
        return results.get(timeout=timeout)
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.terminate()


def produce_requests(settings: Settings, topic: str, rows: list[tuple[int, int, int]], prefix: str) -> float:
    from confluent_kafka import Producer

    from streamml.streaming.clients import producer_config

    producer = Producer(producer_config(settings.kafka, client_id=f"{prefix}-loader"))
    start = time.perf_counter()
    for key, value in request_payloads(rows, prefix, time.time()):
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise SystemExit("could not pre-produce the requests")
    return time.perf_counter() - start


def measure_latency(settings: Settings, base: dict[str, Any], rate: int, args: argparse.Namespace) -> dict[str, Any]:
    from streamml.streaming.clients import ensure_topics

    topics = {k: f"{base['topic_prefix']}.lat{rate}.{k}" for k in ("requests", "predictions", "dlq", "shadow")}
    ensure_topics(settings.kafka, topics.values(), partitions=3)
    cfg = {**base, **topics, "rate": rate, "seconds": args.seconds, "prefix": f"{base['run']}-lat{rate}"}
    start_at = _ctx.Value("d", 0.0)
    scorer_ready, collector_ready, stop = _ctx.Event(), _ctx.Event(), _ctx.Event()
    scorer_q, collector_q, producer_q = _ctx.Queue(), _ctx.Queue(), _ctx.Queue()
    scorer_cfg = {**cfg, "cpu": args.cpu, "group": f"{base['run']}-scorer-{rate}", "limit": 10**12}
    scorer_cfg["max_seconds"] = args.seconds + args.drain_seconds + 120
    scorer = _ctx.Process(target=run_platform, args=(scorer_cfg, scorer_q, scorer_ready, stop))
    other_cpu = 1 - args.cpu if args.cpu in (0, 1) else 0
    side = {**cfg, "cpu": other_cpu, "sample_every": args.sample_every, "drain_seconds": args.drain_seconds}
    collector = _ctx.Process(target=run_collector, args=(side, start_at, collector_ready, collector_q))
    scorer.start()
    collector.start()
    try:
        if not (scorer_ready.wait(120) and collector_ready.wait(60)):
            raise SystemExit("scorer or collector did not get its partitions")
        producer = _ctx.Process(target=run_open_loop_producer, args=(side, start_at, producer_q))
        producer.start()
        sent = producer_q.get(timeout=args.seconds * 3 + 60)
        collected = collector_q.get(timeout=args.drain_seconds + 60)
        stop.set()
        scored = scorer_q.get(timeout=60)
        producer.join(10)
    finally:
        stop.set()
        for proc in (scorer, collector):
            proc.join(15)
            if proc.is_alive():
                proc.terminate()
    return {"rate": rate, "sent": sent, "collected": collected, "scorer": scored}


def _pct(values: list[float], q: float, missing: int = 0) -> str:
    """Percentile counting results never seen (``missing``) as infinitely late."""
    if not values:
        return "-"
    value = np.percentile(np.concatenate([values, np.full(missing, np.inf)]), q, method="higher")
    return f"{value:.1f}" if np.isfinite(value) else "not seen"


def main() -> int:
    parser = argparse.ArgumentParser(description="Scorer throughput (events/s) and open-loop latency on local Kafka.")
    parser.add_argument("--requests", type=int, default=200_000, help="requests consumed by the platform variant")
    parser.add_argument("--baseline-requests", type=int, default=5_000, help="requests of the per-message baseline")
    parser.add_argument("--ceiling-requests", type=int, default=100_000, help="requests of the in-process ceiling")
    parser.add_argument("--batch", type=int, default=500, help="the worker's batch size (the platform's default)")
    parser.add_argument(
        "--poll-timeout", type=float, default=0.0, help="how long a partial batch waits to fill, seconds (the worker's)"
    )
    parser.add_argument(
        "--idle-timeout", type=float, default=0.5, help="how long the worker blocks for a first message (the worker's)"
    )
    parser.add_argument("--rates", default="1000,10000", help="offered loads of the latency runs; empty to skip")
    parser.add_argument("--seconds", type=float, default=25.0, help="duration of each latency run")
    parser.add_argument("--drain-seconds", type=float, default=20.0, help="wait for stragglers after a latency run")
    parser.add_argument("--sample-every", type=int, default=20, help="poll Redis for every Nth request's result")
    parser.add_argument("--cpu", type=int, default=1, help="core the scorer is pinned to (the others use core 0)")
    parser.add_argument("--model-uri", default=f"models:/{names.MODEL_NAME}/1")
    parser.add_argument(
        "--shadow-uri", help="also run the platform variant shadow-scoring this challenger (e.g. models:/NAME/2)"
    )
    parser.add_argument("--redis-db", type=int, default=14, help="scratch Redis database (flushed at the end)")
    parser.add_argument("--source-db", type=int, default=0, help="Redis database the features are copied from")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="time limit of each throughput variant")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the platform variant's main thread")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()
    if args.redis_db in (0, args.source_db):
        parser.error("--redis-db must be a scratch database, not the platform's")
    os.environ["STREAMML_REDIS__DB"] = str(args.redis_db)  # before any get_settings(), inherited by the children
    settings = get_settings()
    rates = [int(x) for x in args.rates.split(",") if x.strip()]

    from confluent_kafka.admin import AdminClient

    from streamml.stores.redis_client import redis_client
    from streamml.streaming.clients import admin_config

    run = f"bench.{uuid.uuid4().hex[:12]}"
    topics = {k: f"{run}.{k}" for k in ("requests", "predictions", "dlq", "shadow")}
    scratch = redis_client(settings.redis)
    load = os.getloadavg()
    console.print(
        f"python {platform.python_version()}, {os.cpu_count()} cpus, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}; scorer pinned to cpu {args.cpu}; topics {run}.*; redis db {args.redis_db}"
    )
    report: dict[str, Any] = {"args": vars(args), "load_start": load, "run": run}
    scratch.flushdb()
    try:
        version, n_keys = copy_features(settings, args.source_db)
        console.print(f"copied {n_keys:,} feature keys of version {version} from db {args.source_db}")
        base = {
            "run": run,
            "topic_prefix": run,
            "model_uri": args.model_uri,
            "batch": args.batch,
            "poll_timeout": args.poll_timeout,
            "idle_timeout": args.idle_timeout,
            "feature_version": version,
            "max_seconds": args.max_seconds,
            "cpu": args.cpu,
        }
        if not args.skip_throughput:
            report["throughput"] = throughput(settings, base, topics, args)
        for rate in rates:
            console.print(f"latency at {rate:,} events/s for {args.seconds:.0f} s")
            report.setdefault("latency", []).append(measure_latency(settings, base, rate, args))
            print_latency(report["latency"][-1])
    finally:
        admin = AdminClient(admin_config(settings.kafka))
        created = [t for t in admin.list_topics(timeout=10).topics if t.startswith(run)]
        if created:
            for future in admin.delete_topics(created, operation_timeout=30).values():
                future.result(30)
        scratch.flushdb()
        console.print(f"deleted {len(created)} topic(s), flushed redis db {args.redis_db}")
    report["load_end"] = os.getloadavg()
    console.print(f"load average at the end: {' '.join(f'{x:.2f}' for x in report['load_end'])}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1, default=str)
    return 0


def throughput(settings: Settings, base: dict[str, Any], topics: dict[str, str], args: argparse.Namespace) -> dict:
    from streamml.streaming.clients import ensure_topics

    ensure_topics(settings.kafka, topics.values(), partitions=3)
    rows = request_rows(settings, base["feature_version"], args.requests)
    seconds = produce_requests(settings, topics["requests"], rows, f"{base['run']}-tp")
    console.print(f"pre-produced {len(rows):,} requests in {seconds:.1f} s")
    cfg = {**base, **topics}
    timeout = args.max_seconds + 180
    console.print("platform: Worker + ScorerHandler")
    plat = _child(run_platform, {**cfg, "group": f"{base['run']}-platform", "limit": args.requests,
                                 "profile": args.profile}, timeout=timeout)  # fmt: skip
    shadow = None
    if args.shadow_uri:
        console.print(f"platform + shadow scoring of {args.shadow_uri}")
        shadow = _child(run_platform, {**cfg, "group": f"{base['run']}-shadow", "limit": args.requests,
                                       "shadow_uri": args.shadow_uri}, timeout=timeout)  # fmt: skip
    console.print("baseline: per message")
    base_r = _child(run_baseline, {**cfg, "group": f"{base['run']}-baseline", "limit": args.baseline_requests},
                    timeout=timeout)  # fmt: skip
    console.print("baseline: per message, numpy")
    base_np = _child(run_baseline, {**cfg, "group": f"{base['run']}-baseline-np", "limit": args.baseline_requests,
                                    "numpy": True}, timeout=timeout)  # fmt: skip
    console.print("ceiling: batch code without Kafka")
    ceil = _child(run_ceiling, {**cfg, "limit": args.ceiling_requests}, timeout=timeout)

    main = rows_out = [
        ("platform: Worker + ScorerHandler, Kafka", plat["count"], plat["seconds"], plat["cpu"]),
        ("baseline: per message (pandas, 3 round trips)", base_r["count"], base_r["seconds"], base_r["cpu"]),
        ("baseline: per message (numpy, 3 round trips)", base_np["count"], base_np["seconds"], base_np["cpu"]),
        ("ceiling: handler.score + Redis writes", ceil["count"], ceil["score_seconds"], ceil["score_cpu"]),
        ("ceiling: whole handler call + sink (parse too)", ceil["count"], ceil["handler_seconds"], ceil["handler_cpu"]),
    ]
    if shadow is not None:
        rows_out = [
            main[0],
            ("platform + shadow scoring", shadow["count"], shadow["seconds"], shadow["cpu"]),
            *main[1:],
        ]
    table = Table(title=f"Scorer throughput, one process on cpu {args.cpu}, batch {args.batch}")
    for name, justify in (("variant", "left"), ("events", "right"), ("s", "right"), ("events/s", "right"),
                          ("process cpu %", "right"), ("events/cpu-s", "right")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    rates = {}
    for name, count, secs, cpu in rows_out:
        rates[name] = count / secs if secs else 0.0
        table.add_row(
            name, f"{count:,}", f"{secs:.2f}", f"{rates[name]:,.0f}", f"{100 * cpu / secs:.0f}", f"{count / cpu:,.0f}"
        )
    console.print(table)
    p, b, b_np, c = (rates[main[i][0]] for i in range(4))
    console.print(
        f"platform/baseline {p / b:.1f}x, platform/numpy baseline {p / b_np:.1f}x (target {TARGET_RATIO}x); "
        f"platform/ceiling {p / c:.2f}; "
        f"platform {p:,.0f} events/s (target {TARGET_EVENTS_PER_SECOND:,})"
    )
    if shadow is not None:
        cost = 1 - rates["platform + shadow scoring"] / p
        console.print(f"shadow scoring costs {100 * cost:.0f}% of the platform's throughput (limit 40%)")
    if plat.get("profile"):
        console.print(plat["profile"], markup=False, highlight=False)
    return {
        "platform": plat, "baseline": base_r, "baseline_numpy": base_np, "ceiling": ceil, "rates": rates,
        "shadow": shadow,
    }  # fmt: skip


def print_latency(result: dict[str, Any]) -> None:
    collected, sent = result["collected"], result["sent"]
    table = Table(title=f"Open-loop latency at {result['rate']:,} events/s (ms from intended send time)")
    for name in ("measured at", "n", "p50", "p90", "p99", "p99.9", "max"):
        table.add_column(name, justify="left" if name == "measured at" else "right")
    for label, key in (("prediction consumed from topic", "topic"), ("scored_at stamp", "scored"),
                       ("pred:{id} seen in Redis (sample)", "redis")):  # fmt: skip
        values = collected[key]
        total = collected["expected"] if key != "redis" else len(values)  # the Redis sample counts only what it saw
        missing = total - len(values)
        table.add_row(label, f"{len(values):,}", *(_pct(values, q, missing) for q in (50, 90, 99, 99.9, 100)))
    console.print(table)
    console.print(
        f"sent {sent['sent']:,} (expected {collected['expected']:,}) in {sent['elapsed']:.1f} s; producer lateness "
        f"p50 {sent['late_p50'] * 1000:.2f} ms p99 {sent['late_p99'] * 1000:.2f} ms; scorer consumed "
        f"{result['scorer']['count']:,} using {_cpu_share(result['scorer']):.0f}% of its core; "
        f"target p99 <= {TARGET_P99_MS:.0f} ms"
    )


def _cpu_share(scorer: dict[str, Any]) -> float:
    """The scorer's CPU time over its wall time, first message to the end of the run, in percent of one core."""
    return 100 * scorer["cpu"] / scorer["wall"] if scorer.get("wall") else 0.0


if __name__ == "__main__":
    raise SystemExit(main())
