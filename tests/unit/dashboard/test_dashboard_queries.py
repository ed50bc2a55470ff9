"""The dashboard's data layer against small fakes of Redis, Kafka's admin API, a consumer and the HTTP API."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import httpx
import pandas as pd
import pytest
import redis
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streamml import names
from streamml.dashboard import queries
from streamml.dashboard.queries import ApiClient, ApiError, ServiceDown
from streamml.names import METRICS_ERRORS, METRICS_HISTORY, METRICS_LATEST, METRICS_RECENT

# ------------------------------------------------------------------------------------------------------------------
# fakes
# ------------------------------------------------------------------------------------------------------------------


class FakeRedis:
    """The few commands the Live page uses, over dicts; ``down`` makes every command fail like a dead server."""

    def __init__(self, down: bool = False) -> None:
        self.values: dict[str, bytes] = {}
        self.lists: dict[str, list[bytes]] = {}
        self.down = down

    def get(self, key: str) -> bytes | None:
        self._check()
        return self.values.get(key)

    def lrange(self, key: str, start: int, end: int) -> list[bytes]:
        self._check()
        items = self.lists.get(key, [])
        n = len(items)
        start = max(0, n + start) if start < 0 else start
        end = n + end if end < 0 else end
        return items[start : end + 1]

    def rpush(self, key: str, *values: str) -> None:
        self.lists.setdefault(key, []).extend(v.encode() for v in values)

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    def _check(self) -> None:
        if self.down:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


class FakePipeline:
    def __init__(self, client: FakeRedis) -> None:
        self.client = client
        self.calls: list[Callable[[], Any]] = []

    def get(self, key: str) -> None:
        self.calls.append(lambda: self.client.get(key))

    def lrange(self, key: str, start: int, end: int) -> None:
        self.calls.append(lambda: self.client.lrange(key, start, end))

    def execute(self) -> list[Any]:
        return [call() for call in self.calls]


def done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


def kafka_down() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._TRANSPORT, "Connection refused"))


class FakeAdmin:
    """Kafka's AdminClient over ``{topic: {partition: (earliest, latest)}}`` and ``{group: {(topic, p): offset}}``."""

    def __init__(
        self,
        topics: dict[str, dict[int, tuple[int, int]]],
        groups: dict[str, dict[tuple[str, int], int]] | None = None,
        down: bool = False,
    ) -> None:
        self.topics = topics
        self.groups = groups or {}
        self.down = down

    def list_topics(self, timeout: float = -1) -> Any:
        if self.down:
            raise kafka_down()
        return SimpleNamespace(
            topics={t: SimpleNamespace(partitions=dict.fromkeys(parts)) for t, parts in self.topics.items()}
        )

    def list_offsets(self, specs: dict[TopicPartition, Any], request_timeout: float = -1) -> dict[Any, Future[Any]]:
        index = 0 if type(specs[next(iter(specs))]).__name__ == "EarliestSpec" else 1
        return {tp: done(SimpleNamespace(offset=self.topics[tp.topic][tp.partition][index])) for tp in specs}

    def list_consumer_groups(self, request_timeout: float = -1) -> Future[Any]:
        valid = [SimpleNamespace(group_id=g, state=SimpleNamespace(name="STABLE")) for g in self.groups]
        return done(SimpleNamespace(valid=valid))

    def list_consumer_group_offsets(self, requests: list[Any], request_timeout: float = -1) -> dict[str, Future[Any]]:
        group = requests[0].group_id
        tps = [TopicPartition(t, p, o) for (t, p), o in self.groups[group].items()]
        return {group: done(SimpleNamespace(group_id=group, topic_partitions=tps))}


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, ts_ms: int, key: bytes, value: bytes) -> None:
        self._t, self._p, self._o, self._ts, self._k, self._v = topic, partition, offset, ts_ms, key, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)

    def key(self) -> bytes:
        return self._k

    def value(self) -> bytes:
        return self._v


class FakeConsumer:
    """Serves the messages of assigned partitions from their assigned offsets, a few per ``consume``."""

    def __init__(self, log: dict[int, list[FakeMessage]]) -> None:
        self.log = log
        self.positions: dict[int, int] = {}
        self.assigned: list[TopicPartition] = []

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = tps
        self.positions = {tp.partition: tp.offset for tp in tps}

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        out = []
        for p, pos in self.positions.items():
            batch = [m for m in self.log[p] if m.offset() >= pos][:2]
            out += batch
            if batch:
                self.positions[p] = batch[-1].offset() + 1
        return out


def snapshot(at: float, **overrides: Any) -> str:
    base = {
        "schema_version": 1, "at": at, "joined_total": 120, "window": 100, "auc": 0.81, "accuracy": 0.74,
        "log_loss": 0.52, "mae": 0.33, "throughput_per_s": 49.5, "latency_p50_ms": 12.0, "latency_p99_ms": 80.0,
        "dlq_total": 3, "expired_total": 0, "lag": {"0": 4, "1": 0, "2": 7}, "model_version": "3",
    }  # fmt: skip
    return json.dumps({**base, **overrides})


def joined(i: int, y_true: int, y_pred: float, version: str = "3") -> str:
    return json.dumps(
        {"request_id": f"r{i}", "y_true": y_true, "y_pred": y_pred, "model_version": version,
         "latency_ms": 10.0 + i, "event_ts": 1_500_000_000 + i}
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------------------
# Live
# ------------------------------------------------------------------------------------------------------------------


def test_read_live_reads_what_the_aggregator_writes() -> None:
    r = FakeRedis()
    r.values[METRICS_LATEST] = snapshot(1000.0).encode()
    r.values[names.FEATURE_VERSION_CURRENT] = b"2"
    r.rpush(METRICS_HISTORY, snapshot(996.0, auc=None, window=0), "not json", snapshot(998.0), snapshot(1000.0))
    r.rpush(METRICS_ERRORS, "0.100000", "0.900000", "0.450000")
    r.rpush(METRICS_RECENT, joined(1, 1, 0.8), joined(2, 0, 0.3))

    view = queries.read_live(r)

    assert view.snapshot is not None and view.snapshot.auc == pytest.approx(0.81)
    assert view.model_version == "3" and view.feature_version == 2
    assert view.errors == pytest.approx([0.1, 0.9, 0.45])
    assert len(view.history) == 3  # the unreadable entry is skipped
    assert view.history["lag_total"].tolist() == [11, 11, 11]
    assert pd.isna(view.history["auc"].iloc[0]) and view.history["auc"].iloc[-1] == pytest.approx(0.81)
    assert view.recent["request_id"].tolist() == ["r2", "r1"]  # newest first
    assert view.recent["absolute_error"].tolist() == pytest.approx([0.3, 0.2])
    assert view.age_seconds(now=1012.5) == pytest.approx(12.5)


def test_read_live_limits_history_and_recent() -> None:
    r = FakeRedis()
    r.rpush(METRICS_HISTORY, *[snapshot(float(i)) for i in range(50)])
    r.rpush(METRICS_RECENT, *[joined(i, 1, 0.5) for i in range(30)])
    view = queries.read_live(r, history_limit=10, recent_limit=5)
    assert len(view.history) == 10 and view.history["time"].iloc[-1].timestamp() == 49.0
    assert view.recent["request_id"].tolist() == ["r29", "r28", "r27", "r26", "r25"]


def test_model_version_falls_back_to_the_newest_prediction_after_an_aggregator_restart() -> None:
    r = FakeRedis()
    r.values[METRICS_LATEST] = snapshot(5.0, model_version=None, window=0, auc=None).encode()
    r.rpush(METRICS_RECENT, joined(1, 1, 0.9, version="2"), joined(2, 1, 0.9, version="4"))
    view = queries.read_live(r)
    assert view.model_version == "4"
    assert queries.read_live(FakeRedis()).model_version is None


def test_read_live_says_redis_is_down() -> None:
    with pytest.raises(ServiceDown, match="Redis is not reachable: .*Connection refused"):
        queries.read_live(FakeRedis(down=True))


def test_error_histogram_has_fixed_bins_over_zero_to_one() -> None:
    hist = queries.error_histogram([0.0, 0.01, 0.049, 0.05, 0.5, 0.999, 1.0, 1.3], bins=20)
    assert len(hist) == 20
    assert hist["bin_start"].iloc[0] == 0.0 and hist["bin_end"].iloc[-1] == 1.0
    assert hist["count"].sum() == 8  # out-of-range errors are clipped into the last bin, never dropped
    assert hist["count"].iloc[0] == 3 and hist["count"].iloc[1] == 1 and hist["count"].iloc[10] == 1
    assert hist["count"].iloc[-1] == 3
    assert queries.error_histogram([])["count"].sum() == 0


def test_long_series_drops_missing_values_and_renames() -> None:
    history = queries.history_frame([snapshot(1.0, auc=None), snapshot(2.0, auc=0.7, mae=0.2)])
    frame = queries.long_series(history, ["auc", "mae"], {"auc": "AUC", "mae": "MAE"})
    assert sorted(zip(frame["series"], frame["value"], strict=True)) == [("AUC", 0.7), ("MAE", 0.2), ("MAE", 0.33)]
    assert queries.long_series(queries.history_frame([]), ["auc"]).empty


def test_long_series_starts_a_new_segment_after_a_pause() -> None:
    history = queries.history_frame([snapshot(t) for t in (0.0, 2.0, 4.0, 100.0, 102.0)])
    frame = queries.long_series(history, ["mae"], gap_seconds=30)
    assert frame["segment"].tolist() == [0, 0, 0, 1, 1]


def test_lag_frame_sorts_partitions_numerically() -> None:
    frame = queries.lag_frame({"10": 1, "2": 5, "0": 0})
    assert frame["partition"].tolist() == ["0", "2", "10"] and frame["lag"].tolist() == [0, 5, 1]


# ------------------------------------------------------------------------------------------------------------------
# Kafka
# ------------------------------------------------------------------------------------------------------------------

TOPICS = {
    names.TOPIC_PREDICTIONS: {0: (0, 10), 1: (5, 8)},
    names.TOPIC_REQUESTS: {0: (0, 12), 1: (0, 9)},
    "__consumer_offsets": {0: (0, 3)},
    "test.abc.requests": {0: (0, 1)},
}
GROUPS = {
    names.GROUP_SCORER: {(names.TOPIC_REQUESTS, 0): 12, (names.TOPIC_REQUESTS, 1): 4},
    names.GROUP_METRICS: {(names.TOPIC_PREDICTIONS, 0): 10, (names.TOPIC_PREDICTIONS, 1): -1001},
    "test-scorer-abc": {("test.abc.requests", 0): 1},
}


def test_list_topics_puts_platform_topics_first_and_hides_internal_ones() -> None:
    admin = FakeAdmin(TOPICS)
    assert queries.list_topics(admin) == [names.TOPIC_REQUESTS, names.TOPIC_PREDICTIONS, "test.abc.requests"]
    assert "__consumer_offsets" in queries.list_topics(admin, include_internal=True)


def test_topic_offsets_and_summary() -> None:
    offsets = queries.topic_offsets(FakeAdmin(TOPICS), [names.TOPIC_PREDICTIONS, "missing.topic"])
    assert offsets[["partition", "earliest", "latest", "messages"]].values.tolist() == [[0, 0, 10, 10], [1, 5, 8, 3]]
    summary = queries.topic_summary(offsets)
    assert summary.to_dict("records") == [
        {"topic": names.TOPIC_PREDICTIONS, "partitions": 2, "messages": 13, "end_offsets": "0:10, 1:8"}
    ]
    assert queries.topic_offsets(FakeAdmin(TOPICS), []).empty


def test_consumer_groups_and_their_lag() -> None:
    admin = FakeAdmin(TOPICS, GROUPS)
    groups = queries.consumer_groups(admin)
    assert [g.group_id for g in groups] == [names.GROUP_METRICS, names.GROUP_SCORER]
    assert groups[0].state == "stable"
    assert len(queries.consumer_groups(admin, include_tests=True)) == 3

    offsets = queries.topic_offsets(admin, [names.TOPIC_PREDICTIONS, names.TOPIC_REQUESTS])
    lag = queries.group_lag(admin, groups, offsets)
    rows = {(r.group, r.topic, r.partition): (r.committed, r.end, r.lag) for r in lag.itertuples()}
    assert rows[(names.GROUP_SCORER, names.TOPIC_REQUESTS, 0)] == (12, 12, 0)
    assert rows[(names.GROUP_SCORER, names.TOPIC_REQUESTS, 1)] == (4, 9, 5)
    # no commit yet on partition 1: the whole retained log (8 - 5) is lag
    committed, end, behind = rows[(names.GROUP_METRICS, names.TOPIC_PREDICTIONS, 1)]
    assert pd.isna(committed) and end == 8 and behind == 3


def test_kafka_down_is_a_service_down() -> None:
    admin = FakeAdmin(TOPICS, down=True)
    with pytest.raises(ServiceDown, match="^Kafka is not reachable: Connection refused$"):
        queries.list_topics(admin)
    with pytest.raises(ServiceDown):
        queries.topic_offsets(admin, [names.TOPIC_PREDICTIONS])


def test_check_port_fails_fast_when_nothing_listens() -> None:
    import socket

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        queries.check_port("Kafka", "127.0.0.1", port)  # answers: no error
    with pytest.raises(ServiceDown, match=f"Kafka is not reachable: nothing answers on 127.0.0.1:{port}"):
        queries.check_port("Kafka", "127.0.0.1", port)


def test_latest_messages_reads_the_newest_across_partitions() -> None:
    topic = names.TOPIC_PREDICTIONS
    log = {
        0: [FakeMessage(topic, 0, o, 1_000_000 + o * 10, b"7", f'{{"n": {o}}}'.encode()) for o in range(10)],
        1: [FakeMessage(topic, 1, o, 1_000_000 + o * 10 + 5, b"8", b"x" * 1000) for o in range(5, 8)],
    }
    consumer = FakeConsumer(log)
    offsets = queries.topic_offsets(FakeAdmin(TOPICS), [topic])

    latest = queries.latest_messages(consumer, topic, offsets, n=4, max_chars=50)

    assert {tp.partition: tp.offset for tp in consumer.assigned} == {0: 6, 1: 5}  # never reads more than it needs
    assert list(zip(latest["partition"], latest["offset"], strict=True)) == [(0, 9), (0, 8), (1, 7), (0, 7)]
    assert latest["key"].iloc[0] == "7" and latest["value"].iloc[0] == '{"n": 9}'
    assert len(latest["value"].iloc[2]) == 50 and latest["value"].iloc[2].endswith("…")


def test_latest_messages_of_an_empty_topic() -> None:
    offsets = queries.topic_offsets(FakeAdmin({"empty": {0: (4, 4)}}), ["empty"])
    assert queries.latest_messages(FakeConsumer({0: []}), "empty", offsets).empty


# ------------------------------------------------------------------------------------------------------------------
# API
# ------------------------------------------------------------------------------------------------------------------


def api(handler: Callable[[httpx.Request], httpx.Response]) -> ApiClient:
    return ApiClient("http://api.test", "secret-key", transport=httpx.MockTransport(handler))


def test_api_client_sends_the_key_only_on_mutating_calls() -> None:
    seen: list[tuple[str, str, str | None, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("X-API-Key"), request.content))
        if request.url.path == "/models":
            return httpx.Response(200, json={"name": "m", "aliases": {}, "versions": []})
        if request.url.path.endswith("/trigger"):
            return httpx.Response(200, json={"dag_id": "d", "run_id": "manual__1", "state": "queued"})
        return httpx.Response(200, json={"version": 3})

    client = api(handler)
    client.models()
    client.promote(3)
    assert client.trigger("movielens_training", {"quantile": 0.8})["run_id"] == "manual__1"
    assert seen[0][:3] == ("GET", "/models", None)
    assert seen[1][:3] == ("POST", "/models/3/promote", "secret-key")
    assert seen[2][:3] == ("POST", "/pipelines/movielens_training/trigger", "secret-key")
    assert json.loads(seen[2][3]) == {"conf": {"quantile": 0.8}}


def test_api_errors_carry_the_detail() -> None:
    client = api(lambda r: httpx.Response(404, json={"detail": "no version 9 of movielens-like"}))
    with pytest.raises(ApiError, match="404: no version 9") as info:
        client.report(9)
    assert info.value.status == 404
    client = api(lambda r: httpx.Response(500, text="Internal Server Error"))
    with pytest.raises(ApiError, match="500: Internal Server Error"):
        client.models()


def test_api_down_is_a_service_down() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(ServiceDown, match=r"The API at http://api.test is not reachable: \[Errno 111\]"):
        api(refuse).pipelines()


def test_ready_reports_which_services_are_down() -> None:
    body = {"detail": "not ready", "down": {"mlflow": "ConnectError"}}
    ready = api(lambda r: httpx.Response(503, json=body)).ready()
    assert not ready.ok and ready.down == {"mlflow": "ConnectError"} and ready.detail == "not ready"
    ok = api(lambda r: httpx.Response(200, json={"status": "ready", "checks": {"redis": "PONG"}})).ready()
    assert ok.ok and ok.checks == {"redis": "PONG"}


def test_predict_posts_the_items() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        preds = [{**i, "score": 0.7, "label": 1, "cold_start": False, "model_name": "m", "model_version": "3",
                  "feature_version": 1} for i in items]  # fmt: skip
        return httpx.Response(200, json={"predictions": preds})

    predictions = api(handler).predict([{"user_id": 1, "movie_id": 2}, {"user_id": 3, "movie_id": 4}])
    frame = queries.predictions_frame(predictions)
    assert frame["movie_id"].tolist() == [2, 4]
    assert frame["label"].tolist() == ["like (>= 4)", "like (>= 4)"]
    assert list(frame.columns) == list(queries.PREDICTION_COLUMNS)


# ------------------------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------------------------

MODELS = {
    "name": "movielens-like",
    "aliases": {"champion": "9", "challenger": "10"},
    "versions": [
        {"version": "9", "aliases": ["champion"], "run_id": "a", "created": "2026-01-01T10:00:00+00:00",
         "model_type": "hgb", "metrics": {"streaming_auc": 0.81, "frozen_auc": 0.67, "zeta": 1.0}},
        {"version": "10", "aliases": ["challenger"], "run_id": "b", "created": "2026-01-02T10:00:00Z",
         "model_type": "logreg", "metrics": {"streaming_auc": 0.79, "frozen_auc": float("nan")}},
    ],
}  # fmt: skip


def test_versions_table_newest_first() -> None:
    table = queries.versions_table(MODELS)
    assert table["version"].tolist() == ["10", "9"]  # numeric, not lexicographic
    assert table["aliases"].tolist() == ["challenger", "champion"]
    assert table["created"].iloc[0] == pd.Timestamp("2026-01-02T10:00:00Z")
    assert queries.versions_table({"versions": []}).empty


def test_compare_versions_side_by_side() -> None:
    frame = queries.compare_versions(MODELS)
    assert list(frame.columns) == ["v10 (challenger)", "v9 (champion)"]
    assert list(frame.index) == ["streaming_auc", "frozen_auc", "zeta"]  # the gate metric first
    assert frame.loc["streaming_auc"].tolist() == [0.79, 0.81]
    assert pd.isna(frame.loc["frozen_auc", "v10 (challenger)"]) and pd.isna(frame.loc["zeta", "v10 (challenger)"])
    assert list(queries.compare_versions(MODELS, ["9"]).columns) == ["v9 (champion)"]


def test_confusion_frame_cells() -> None:
    cells = queries.confusion_frame([[50, 10], [20, 20]], ["dislike", "like"])
    assert cells[["actual", "predicted", "count"]].values.tolist() == [
        ["dislike (< 4)", "dislike (< 4)", 50],
        ["dislike (< 4)", "like (>= 4)", 10],
        ["like (>= 4)", "dislike (< 4)", 20],
        ["like (>= 4)", "like (>= 4)", 20],
    ]
    assert cells["share"].sum() == pytest.approx(1.0) and cells["share"].iloc[0] == pytest.approx(0.5)


REPORT = {"accuracy": 0.7, "dislike": {"precision": 0.8, "recall": 0.6, "f1-score": 0.69, "support": 60.0},
          "like": {"precision": 0.6, "recall": 0.8, "f1-score": 0.69, "support": 40.0},
          "macro avg": {"precision": 0.7, "recall": 0.7, "f1-score": 0.69, "support": 100.0}}  # fmt: skip


def test_by_mode_accepts_one_or_per_mode_entries() -> None:
    assert queries.by_mode([[1, 2], [3, 4]]) == {"": [[1, 2], [3, 4]]}
    assert queries.by_mode({"streaming": [[1, 2], [3, 4]], "frozen": [[4, 3], [2, 1]]}).keys() == {
        "streaming",
        "frozen",
    }
    assert queries.by_mode(REPORT) == {"": REPORT}
    assert queries.by_mode({"streaming": REPORT, "frozen": REPORT}).keys() == {"streaming", "frozen"}
    assert queries.by_mode(None) == {} and queries.by_mode({}) == {}


def test_classification_frame_names_the_classes() -> None:
    table = queries.classification_frame(REPORT, ["dislike", "like"])
    assert list(table.index) == ["accuracy", "dislike (< 4)", "like (>= 4)", "macro avg"]
    assert table.loc["like (>= 4)", "recall"] == 0.8 and table.loc["accuracy", "f1-score"] == 0.7
    numeric = queries.classification_frame({"0": REPORT["dislike"], "1": REPORT["like"]})
    assert list(numeric.index) == ["dislike (< 4)", "like (>= 4)"]


def test_report_metrics_puts_the_models_metrics_before_baselines() -> None:
    report = {"metrics": {"frozen": {"auc": 0.6, "baseline_user_auc": 0.5}, "streaming": {"log_loss": 0.5, "auc": 0.8,
              "baseline_global_auc": 0.5}}}  # fmt: skip
    frame = queries.report_metrics(report)
    assert list(frame.columns) == ["streaming", "frozen"]
    assert list(frame.index) == ["auc", "log_loss", "baseline_global_auc", "baseline_user_auc"]
    assert frame.loc["auc"].tolist() == [0.8, 0.6] and pd.isna(frame.loc["log_loss", "frozen"])


def test_importance_frame_sorted_and_capped() -> None:
    frame = queries.importance_frame([{"feature": f"f{i}", "importance": i / 10} for i in range(30)], top=5)
    assert frame["feature"].tolist() == ["f29", "f28", "f27", "f26", "f25"]


def test_runs_and_datasets_tables() -> None:
    runs = queries.runs_table([{"run_id": "r", "run_name": "hgb-fv1", "status": "FINISHED",
                                "start_time": 1_767_225_600_000, "params": {"model_type": "hgb"},
                                "metrics": {"streaming_auc": 0.8}}])  # fmt: skip
    assert runs.iloc[0]["start_time"] == pd.Timestamp("2026-01-01", tz="UTC")
    assert runs.iloc[0]["model_type"] == "hgb" and runs.iloc[0]["streaming_auc"] == 0.8
    flat = queries.datasets_table([{"snapshot": "s1", "ratings": 100, "md5": {"a": "b"}}])
    assert flat.columns.tolist() == ["snapshot", "ratings"]
    nested = queries.datasets_table([{"snapshot": "s2", "created": "2026-01-01T00:00:00Z", "rows": {"ratings": 5}}])
    assert nested.iloc[0]["ratings"] == 5 and nested.iloc[0]["created"] == pd.Timestamp("2026-01-01", tz="UTC")


# ------------------------------------------------------------------------------------------------------------------
# Pipelines and Predict
# ------------------------------------------------------------------------------------------------------------------

RUN = {
    "run_id": "manual__1",
    "state": "running",
    "start_date": "2026-01-01T10:00:00Z",
    "end_date": None,
    "tasks": [
        {"task_id": "ingest", "state": "success", "try_number": 1, "start_date": "2026-01-01T10:00:00Z",
         "end_date": "2026-01-01T10:00:04.5Z"},
        {"task_id": "validate", "state": "skipped", "try_number": 0, "start_date": None, "end_date": None},
        {"task_id": "train", "state": "running", "try_number": 1, "start_date": "2026-01-01T10:00:05Z",
         "end_date": None},
        {"task_id": "promote", "state": None, "try_number": 0, "start_date": None, "end_date": None},
    ],
}  # fmt: skip


def test_run_progress_counts_finished_tasks() -> None:
    progress = queries.run_progress(RUN)
    assert (progress.done, progress.total, progress.finished) == (2, 4, False)
    assert progress.fraction == 0.5
    assert progress.tasks["state"].tolist() == ["success", "skipped", "running", "scheduled"]
    assert progress.tasks["duration_s"].iloc[0] == pytest.approx(4.5) and pd.isna(progress.tasks["duration_s"].iloc[2])
    finished = queries.run_progress({"run_id": "x", "state": "success", "tasks": []})
    assert finished.finished and finished.fraction == 1.0


def test_dag_runs_table() -> None:
    table = queries.dag_runs_table([RUN, {**RUN, "run_id": "manual__0", "state": "failed"}])
    assert table[["run_id", "state", "tasks"]].values.tolist() == [
        ["manual__1", "running", "2/4 done"],
        ["manual__0", "failed", "2/4 done"],
    ]


def test_parse_conf() -> None:
    assert queries.parse_conf("  ") == {}
    assert queries.parse_conf('{"quantile": 0.8}') == {"quantile": 0.8}
    with pytest.raises(ValueError, match="not valid JSON"):
        queries.parse_conf("{quantile: 0.8}")
    with pytest.raises(ValueError, match="JSON object"):
        queries.parse_conf("[1, 2]")


def test_parse_pairs() -> None:
    text = "1, 31\n\n# a comment\n2 1029   # trailing\n3\t1061\n"
    assert queries.parse_pairs(text) == [
        {"user_id": 1, "movie_id": 31},
        {"user_id": 2, "movie_id": 1029},
        {"user_id": 3, "movie_id": 1061},
    ]
    with pytest.raises(ValueError, match="line 2"):
        queries.parse_pairs("1, 2\n1, -5")
    with pytest.raises(ValueError, match="at most 2"):
        queries.parse_pairs("1 1\n2 2\n3 3", limit=2)


def test_api_base_url_prefers_the_dashboard_setting() -> None:
    from streamml.config import ApiSettings, DashboardSettings, Settings

    default = Settings(api=ApiSettings(host="10.0.0.5", port=9000))
    assert queries.api_base_url(default) == "http://10.0.0.5:9000"
    explicit = Settings(dashboard=DashboardSettings(api_url="http://api:8000/"))
    assert queries.api_base_url(explicit) == "http://api:8000"
