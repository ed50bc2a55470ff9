"""Property tests: no input can block a partition. Every message of a batch, whatever its bytes, comes out of each
handler and of the worker exactly once, as its output or as a dead letter with a known reason; only infrastructure
faults (TransientError) raise."""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streaming_fakes import FakeRedis, Msg

from streamml import names
from streamml.bounds import MAX_COUNT, MAX_FEATURE_MAGNITUDE, MAX_ID, MAX_TIMESTAMP
from streamml.errors import DataValidationError, PoisonMessageError
from streamml.features import packing, spec
from streamml.stores.features import UpdatePlan
from streamml.stores.metrics import RedisMetricsStore
from streamml.streaming.messages import (
    POISON_REASONS,
    DeadLetter,
    Feedback,
    Message,
    Prediction,
    RatingRequest,
    parse,
)
from streamml.streaming.metrics import MetricLog, MetricsHandler, MetricsSnapshot
from streamml.streaming.scorer import ScorerHandler, ServingModel
from streamml.streaming.updater import FeatureUpdaterHandler
from streamml.streaming.worker import BatchResult, Output, Worker

PROPERTY = settings(
    deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
DLQ = names.TOPIC_REQUESTS_DLQ
VERSION = 1
USERS = (1, 2, 3)
MOVIES = (10, 11, 12)
RAISING_MOVIE, NAN_MOVIE, ABOVE_ONE_MOVIE = 20, 21, 22  # the test model refuses these (see refusing_model)
RAISING_YEAR, NAN_YEAR, ABOVE_ONE_YEAR = 1901, 1902, 1903
YEAR = spec.FEATURE_NAMES.index("movie_year")
HALF_STARS = tuple(k / 2 for k in range(1, 11))


# Kafka, Redis and model stand-ins.


def batch(payloads: Sequence[bytes | None], topics: Sequence[str] | None = None) -> list[Msg]:
    topics = topics or [names.TOPIC_REQUESTS] * len(payloads)
    return [
        Msg(p, offset_=i, partition_=i % 3, topic_=t) for i, (p, t) in enumerate(zip(payloads, topics, strict=True))
    ]


@dataclass
class FakeProducer:
    produced: list[tuple[str, bytes]] = field(default_factory=list)

    def produce(self, topic: str, key: Any, value: bytes, on_delivery: Any) -> None:
        self.produced.append((topic, value))

    def poll(self, _: float) -> int:
        return 0

    def flush(self, _: float) -> int:
        return 0


@dataclass
class FakeConsumer:
    commits: list[list[Any]] = field(default_factory=list)

    def commit(self, asynchronous: bool, offsets: list[Any]) -> None:
        self.commits.append(offsets)


@dataclass
class MemoryFeatureStore:
    """The RedisFeatureStore surface the scorer and the feature updater call, over dicts."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    applied: dict[int, set[str]] = field(default_factory=dict)
    predictions: dict[str, bytes] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    version: int | None = VERSION

    def current_version(self) -> int | None:
        return self.version

    def get_many(self, version: int, user_ids: Sequence[int], movie_ids: Sequence[int]) -> list[bytes | None]:
        return [self.blobs.get(key) for key in state_keys(version, user_ids, movie_ids)]

    def write_predictions(self, items: Sequence[tuple[str, bytes]], ttl_seconds: int) -> None:
        self.predictions.update(items)

    def read_for_update(
        self, version: int, rating_ids: Sequence[str], user_ids: Sequence[int], movie_ids: Sequence[int]
    ) -> tuple[list[bool], list[bytes | None]]:
        applied = self.applied.get(version, set())
        return [r in applied for r in rating_ids], self.get_many(version, user_ids, movie_ids)

    def update_atomically(
        self,
        version: int,
        rating_ids: Sequence[str],
        user_ids: Sequence[int],
        movie_ids: Sequence[int],
        plan: UpdatePlan,
    ) -> int:
        update = plan(*self.read_for_update(version, rating_ids, user_ids, movie_ids))
        if update is not None:
            self.blobs.update({names.user_features_key(version, u): b for u, b in update.users.items()})
            self.blobs.update({names.movie_features_key(version, m): b for m, b in update.movies.items()})
            self.blobs[names.globals_features_key(version)] = update.globals_blob
            self.applied.setdefault(version, set()).update(update.rating_ids)
            self.latencies.extend(update.applied_latency_ms)
        return 0


def state_keys(version: int, user_ids: Sequence[int], movie_ids: Sequence[int]) -> list[str]:
    keys = [names.user_features_key(version, u) for u in user_ids]
    keys += [names.movie_features_key(version, m) for m in movie_ids]
    return [*keys, names.globals_features_key(version)]


def refusing_model(version: str = "7") -> ServingModel:
    """Scores 0.25, except: any batch with a row of RAISING_YEAR raises; NAN_YEAR rows score NaN; ABOVE_ONE_YEAR
    rows score 1.5."""

    def predict(x: np.ndarray) -> np.ndarray:
        years = x[:, YEAR]
        if np.any(years == RAISING_YEAR):
            raise ValueError("the model refuses this row")
        scores = np.full(len(x), 0.25)
        scores[years == NAN_YEAR] = math.nan
        scores[years == ABOVE_ONE_YEAR] = 1.5
        return scores

    return ServingModel("m", version, predict)


# Valid states and blobs.


def sample_state() -> spec.FeatureState:
    state = spec.FeatureState.from_catalog(
        [10, 11, 12, RAISING_MOVIE, NAN_MOVIE, ABOVE_ONE_MOVIE],
        ["A (1995)", "B", "C (2001)", f"R ({RAISING_YEAR})", f"N ({NAN_YEAR})", f"O ({ABOVE_ONE_YEAR})"],
        ["Comedy|Drama", None, "(no genres listed)|War", "Action", "Horror", "IMAX"],
    )
    for k, (user, movie, rating) in enumerate([(1, 10, 5.0), (1, 11, 2.5), (2, 10, 0.5), (2, 12, 4.0), (1, 12, 3.0)]):
        state.apply(user, movie, rating, 100 + k)
    return state


SAMPLE = sample_state()
GOOD_USER_BLOBS = [packing.pack_user(u) for u in SAMPLE.users.values()] + [packing.pack_user(spec.UserState())]
GOOD_MOVIE_BLOBS = [packing.pack_movie(SAMPLE.movies[m]) for m in MOVIES] + [packing.pack_movie(spec.MovieState())]
GOOD_GLOBALS_BLOB = packing.pack_globals(SAMPLE.globals)
MODEL_MOVIE_BLOBS = {m: packing.pack_movie(SAMPLE.movies[m]) for m in (RAISING_MOVIE, NAN_MOVIE, ABOVE_ONE_MOVIE)}


def unpacks(unpack: Callable[[bytes], Any], blob: bytes) -> bool:
    try:
        unpack(blob)
    except DataValidationError:
        return False
    return True


# Strategies: arbitrary bytes, arbitrary JSON, well-formed messages with arbitrary field values.

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text()
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELD_VALUES = (
    st.integers()
    | st.integers(-2, 2**33)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
    | st.sampled_from([2**31, 2**32, 2**63, -1, math.nan, math.inf, -math.inf, 0.0, 5.5, 3.7, "7", "x" * 200])
    | st.lists(st.integers(), max_size=3)
)
TEXT_ID = st.from_regex(re.compile(r"[!-~]{1,12}"), fullmatch=True)
TIMESTAMPS = st.integers(0, MAX_TIMESTAMP)
INSTANTS = st.floats(0, MAX_TIMESTAMP)


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def request_fields(users: Sequence[int] = USERS, movies: Sequence[int] = MOVIES) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "request_id": TEXT_ID,
            "user_id": st.sampled_from(users),
            "movie_id": st.sampled_from(movies),
            "event_ts": TIMESTAMPS,
            "sent_at": INSTANTS,
        }
    )


def feedback_fields() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "request_id": TEXT_ID,
            "user_id": st.sampled_from(USERS),
            "movie_id": st.sampled_from(MOVIES),
            "rating": st.sampled_from(HALF_STARS),
            "event_ts": st.integers(0, 4) | TIMESTAMPS,  # small times: the same rating id recurs
        },
        optional={"sent_at": INSTANTS},
    )


def prediction_fields(request_ids: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    feature = st.floats(-MAX_FEATURE_MAGNITUDE, MAX_FEATURE_MAGNITUDE)
    return st.fixed_dictionaries(
        {
            "request_id": request_ids,
            "user_id": st.integers(0, MAX_ID),
            "movie_id": st.integers(0, MAX_ID),
            "score": st.floats(0.0, 1.0),
            "label": st.sampled_from([0, 1]),
            "model_name": TEXT_ID,
            "model_version": TEXT_ID,
            "feature_version": st.integers(0, MAX_COUNT),
            "cold_start": st.booleans(),
            "event_ts": TIMESTAMPS,
            "sent_at": INSTANTS,
            "scored_at": INSTANTS,
            "features": st.lists(feature, min_size=spec.N_FEATURES, max_size=spec.N_FEATURES),
            "globals_used": st.tuples(st.integers(0, MAX_COUNT), feature, st.integers(0, MAX_COUNT)),
        }
    )


@st.composite
def mangled(draw: st.DrawFn, fields: st.SearchStrategy[dict[str, Any]]) -> bytes:
    """A message object whose fields may be replaced by arbitrary values, dropped, or joined by extra ones."""
    message = dict(draw(fields))
    for name in list(message):
        action = draw(st.integers(0, 5))
        if action == 0:
            message[name] = draw(FIELD_VALUES)
        elif action == 1:
            del message[name]
    if draw(st.integers(0, 4)) == 0:
        message.update(draw(st.dictionaries(st.text(max_size=6), FIELD_VALUES, min_size=1, max_size=2)))
    return dumps(message)


def payloads(fields: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes | None]:
    return st.one_of(
        st.none(),
        st.binary(max_size=80),
        JSON_VALUES.map(dumps),
        mangled(fields),
        mangled(fields),
        fields.map(dumps),
        st.sampled_from([b"[" * 20_000, b"[" * 10_000, b"{" + b" " * 17_000 + b"}", b"\xff\xfe", b""]),
    )


def mixed(fields: st.SearchStrategy[dict[str, Any]], max_size: int = 12) -> st.SearchStrategy[list[bytes | None]]:
    """A batch of arbitrary payloads with valid messages mixed in."""
    return st.lists(payloads(fields) | fields.map(dumps), min_size=1, max_size=max_size)


def outcome(model: type[Message], payload: bytes | None) -> Message | PoisonMessageError:
    """What parse makes of a payload; anything other than a message or a PoisonMessageError fails the test."""
    try:
        return parse(model, payload)
    except PoisonMessageError as exc:
        assert exc.reason in POISON_REASONS
        return exc


def dead_letters(outputs: Sequence[Output], topic: str = DLQ) -> dict[int, DeadLetter]:
    """Dead letters by the offset of their message (offsets are unique in these batches); none twice."""
    letters = [DeadLetter.model_validate_json(o.value) for o in outputs if o.topic == topic]
    by_offset = {d.offset: d for d in letters}
    assert len(by_offset) == len(letters), "a message was dead-lettered twice"
    assert all(d.reason in POISON_REASONS for d in letters)
    assert all(d.error_type == "PoisonMessageError" for d in letters)
    return by_offset


# parse itself.


@PROPERTY
@given(
    st.sampled_from([RatingRequest, Feedback, Prediction]),
    payloads(request_fields()) | payloads(feedback_fields()) | payloads(prediction_fields(TEXT_ID)),
)
def test_parse_returns_a_message_or_refuses_with_a_reason(model: type[Message], payload: bytes | None) -> None:
    result = outcome(model, payload)
    if isinstance(result, Message):
        assert isinstance(result, model)
        assert parse(model, result.encode()) == result


def _valid_request(value: Any) -> bool:
    """The bounds of a RatingRequest, written out independently of pydantic."""
    if not isinstance(value, dict) or set(value) - {"schema_version"} != set(REQUEST_NAMES):
        return False
    if "schema_version" in value and (type(value["schema_version"]) is not int or value["schema_version"] != 1):
        return False
    rid = value["request_id"]
    if not isinstance(rid, str) or not re.fullmatch(r"[\x21-\x7e]{1,128}", rid):
        return False
    for name, top in (("user_id", MAX_ID), ("movie_id", MAX_ID), ("event_ts", MAX_TIMESTAMP)):
        if type(value[name]) is not int or not 0 <= value[name] <= top:
            return False
    sent = value["sent_at"]
    if type(sent) not in (int, float):
        return False
    try:
        sent = float(sent)
    except OverflowError:
        return False
    return math.isfinite(sent) and 0 <= sent <= MAX_TIMESTAMP


REQUEST_NAMES = ("request_id", "user_id", "movie_id", "event_ts", "sent_at")


@PROPERTY
@given(mangled(request_fields(users=(0, 1, MAX_ID), movies=(0, MAX_ID))) | request_fields().map(dumps))
def test_parse_accepts_exactly_the_requests_within_bounds(payload: bytes) -> None:
    result = outcome(RatingRequest, payload)
    assert isinstance(result, RatingRequest) == _valid_request(json.loads(payload)), payload


# The scorer.


KINDS: dict[str, tuple[Callable[[bytes], Any], np.dtype, bytes]] = {  # unpack, layout, the empty state's blob
    "user": (packing.unpack_user, packing.USER_LAYOUT, packing.pack_user(spec.UserState())),
    "movie": (packing.unpack_movie, packing.MOVIE_LAYOUT, packing.pack_movie(spec.MovieState())),
    "globals": (packing.unpack_globals, packing.GLOBALS_LAYOUT, packing.pack_globals(spec.GlobalState())),
}


@st.composite
def corrupt_blobs(draw: st.DrawFn, of: str) -> bytes:
    """Bytes that the unpack of kind ``of`` refuses: random bytes of any length, msgpack of arbitrary values (format
    2's encoding), and records of the layout with one field's bytes replaced by arbitrary ones (any int, NaN
    payloads, infinities)."""
    unpack, layout, base = KINDS[of]
    kind = draw(st.integers(0, 2))
    if kind == 0:
        blob = draw(st.binary(max_size=40) | st.binary(min_size=layout.itemsize - 2, max_size=layout.itemsize + 2))
    elif kind == 1:
        try:
            blob = msgpack.packb(draw(JSON_VALUES))
        except OverflowError:  # an int msgpack cannot hold
            blob = b"\xc1"
    else:
        name = draw(st.sampled_from(layout.names))
        offset, size = layout.fields[name][1], layout.fields[name][0].itemsize
        blob = base[:offset] + draw(st.binary(min_size=size, max_size=size)) + base[offset + size :]
    if unpacks(unpack, blob):
        blob = b"\xc1"  # the draw that happens to be valid (a count of 7, say): use one that never is instead
    return blob


@dataclass
class ScorerWorld:
    store: MemoryFeatureStore
    bad_users: set[int]
    bad_movies: set[int]
    bad_globals: bool


@st.composite
def scorer_worlds(draw: st.DrawFn, corrupt: bool = True) -> ScorerWorld:
    blobs: dict[str, bytes] = {}
    bad_users: set[int] = set()
    bad_movies: set[int] = set()
    for user in USERS:
        kind = draw(st.integers(0, 2 if corrupt else 1))
        if kind == 1:
            blobs[names.user_features_key(VERSION, user)] = draw(st.sampled_from(GOOD_USER_BLOBS))
        elif kind == 2:
            blobs[names.user_features_key(VERSION, user)] = draw(corrupt_blobs("user"))
            bad_users.add(user)
    for movie in MOVIES:
        kind = draw(st.integers(0, 2 if corrupt else 1))
        if kind == 1:
            blobs[names.movie_features_key(VERSION, movie)] = draw(st.sampled_from(GOOD_MOVIE_BLOBS))
        elif kind == 2:
            blobs[names.movie_features_key(VERSION, movie)] = draw(corrupt_blobs("movie"))
            bad_movies.add(movie)
    for movie, blob in MODEL_MOVIE_BLOBS.items():
        blobs[names.movie_features_key(VERSION, movie)] = blob
    bad_globals = corrupt and draw(st.integers(0, 7)) == 0
    if bad_globals:
        blobs[names.globals_features_key(VERSION)] = draw(corrupt_blobs("globals"))
    elif draw(st.booleans()):
        blobs[names.globals_features_key(VERSION)] = GOOD_GLOBALS_BLOB
    return ScorerWorld(MemoryFeatureStore(blobs), bad_users, bad_movies, bad_globals)


SCORED_MOVIES = (*MOVIES, RAISING_MOVIE, NAN_MOVIE, ABOVE_ONE_MOVIE)


def check_scorer_batch(
    handler: ScorerHandler, messages: Sequence[Msg], expected: Callable[[RatingRequest], str | None]
) -> None:
    """Run the handler; each message must be predicted (``expected`` gives None) or dead-lettered exactly once with
    the reason of its parse or the reason ``expected`` gives."""
    result = handler(messages)
    letters = dead_letters(result.outputs)
    predictions = [Prediction.model_validate_json(o.value) for o in result.outputs if o.topic != DLQ]
    assert all(o.topic in (DLQ, names.TOPIC_PREDICTIONS) for o in result.outputs)
    assert len(letters) + len(predictions) == len(messages)
    assert sorted(result.refused) == sorted(d.reason for d in letters.values())
    predicted: list[RatingRequest] = []
    for msg in messages:
        parsed = outcome(RatingRequest, msg.payload)
        want = parsed.reason if isinstance(parsed, PoisonMessageError) else expected(parsed)  # type: ignore[arg-type]
        if want is None:
            assert msg.offset_ not in letters, (letters[msg.offset_].reason, letters[msg.offset_].error)
            predicted.append(parsed)  # type: ignore[arg-type]
        else:
            assert letters[msg.offset_].reason == want, letters[msg.offset_].error
    assert [(p.request_id, p.user_id, p.movie_id, p.event_ts, p.sent_at) for p in predictions] == [
        (r.request_id, r.user_id, r.movie_id, r.event_ts, r.sent_at) for r in predicted
    ]
    assert all(p.score == 0.25 and p.label == 0 and p.feature_version == VERSION for p in predictions)
    if predictions:
        assert result.sink is not None
        result.sink()
        assert set(handler.features.predictions) >= {names.prediction_key(p.request_id) for p in predictions}  # type: ignore[attr-defined]


@PROPERTY
@given(scorer_worlds(), mixed(request_fields(movies=SCORED_MOVIES)))
def test_scorer_accounts_for_every_request(world: ScorerWorld, batch_payloads: list[bytes | None]) -> None:
    handler = ScorerHandler(world.store, refusing_model, clock=lambda: 1_000.0)  # type: ignore[arg-type]

    def expected(request: RatingRequest) -> str | None:
        if world.bad_globals or request.user_id in world.bad_users or request.movie_id in world.bad_movies:
            return "bad_feature_blob"
        if request.movie_id in (RAISING_MOVIE, NAN_MOVIE, ABOVE_ONE_MOVIE):
            return "scoring_error"
        return None  # includes arbitrary valid requests of unknown users and movies: scored cold

    check_scorer_batch(handler, batch(batch_payloads), expected)


IN_BOUNDS_COUNTS = st.integers(0, MAX_COUNT) | st.sampled_from([0, 1, 2, MAX_COUNT])
IN_BOUNDS_SUMS = st.floats(-1e12, 1e12) | st.sampled_from([0.0, 1e12, -1e12, 1e11, 5.0])


@st.composite
def extreme_user_blobs(draw: st.DrawFn) -> bytes:
    """A user blob within every bound unpack_user checks, with extreme (forged) values."""
    count = draw(IN_BOUNDS_COUNTS)
    sums, squares = (lambda: draw(IN_BOUNDS_SUMS)), (lambda: draw(st.floats(0.0, 1e12)))
    state = spec.UserState(
        count=count, total=sums(), total_sq=sums(), likes=draw(st.integers(0, count)),
        last_ts=draw(st.none() | TIMESTAMPS), residual_total=sums(), last_rating=draw(st.none() | IN_BOUNDS_SUMS),
        recent=[sums() for _ in range(spec.N_RECENT)], half_stars=draw(st.integers(0, count)),
        five_stars=draw(st.integers(0, count)), low_ratings=draw(st.integers(0, count)), residual_sq_total=squares(),
        residual_sq_recent=squares(), first_ts=draw(st.none() | TIMESTAMPS), line_x=sums(), line_xx=squares(),
        line_xy=sums(), line_y=sums(),
    )  # fmt: skip
    for genre in draw(st.lists(st.integers(0, spec.N_GENRES - 1), max_size=3, unique=True)):
        state.genre_count[genre] = draw(IN_BOUNDS_COUNTS)  # may exceed the user's count: forged
        for values in (state.genre_total, state.genre_residual_recent, state.genre_residual_total):
            values[genre] = sums()
        state.genre_like_recent[genre] = sums()
    return packing.pack_user(state)


@st.composite
def extreme_movie_blobs(draw: st.DrawFn) -> bytes:
    genres = tuple(sorted(draw(st.lists(st.integers(0, spec.N_GENRES - 1), max_size=4, unique=True))))
    count = draw(IN_BOUNDS_COUNTS)
    state = spec.MovieState(
        genres, draw(st.none() | st.integers(0, 9999)), count, draw(IN_BOUNDS_SUMS), draw(IN_BOUNDS_SUMS),
        draw(st.integers(0, count)), draw(IN_BOUNDS_SUMS), draw(st.none() | TIMESTAMPS),
    )  # fmt: skip
    return packing.pack_movie(state)


@st.composite
def extreme_globals_blobs(draw: st.DrawFn) -> bytes:
    return packing.pack_globals(spec.GlobalState(draw(IN_BOUNDS_COUNTS), draw(IN_BOUNDS_SUMS), draw(IN_BOUNDS_COUNTS)))


def features_in_bounds(user: bytes | None, movie: bytes | None, globals_blob: bytes | None, ts: int) -> bool:
    """Whether the vector (and the globals) a Prediction would carry are finite and within MAX_FEATURE_MAGNITUDE."""
    sums = packing.unpack_globals(globals_blob) if globals_blob is not None else spec.GlobalState()
    vector, _ = spec.features_from_states(
        packing.unpack_user(user) if user is not None else None,
        packing.unpack_movie(movie) if movie is not None else None,
        sums,
        ts,
    )
    values = [*vector, sums.total]
    return all(math.isfinite(v) and abs(v) <= MAX_FEATURE_MAGNITUDE for v in values)


@PROPERTY
@given(
    st.dictionaries(st.sampled_from(USERS), extreme_user_blobs()),
    st.dictionaries(st.sampled_from(MOVIES), extreme_movie_blobs()),
    st.none() | extreme_globals_blobs(),
    mixed(request_fields(), max_size=6),
)
def test_scorer_accounts_for_requests_on_forged_states_within_the_blob_bounds(
    users: dict[int, bytes], movies: dict[int, bytes], globals_blob: bytes | None, batch_payloads: list[bytes | None]
) -> None:
    """Blobs that unpack (every value within the bounds unpack_* check) but are forged: huge sums, genre counts over
    the user's count. A request whose features would leave the Prediction bounds must be refused, not raise."""
    blobs = {names.user_features_key(VERSION, u): b for u, b in users.items()}
    blobs |= {names.movie_features_key(VERSION, m): b for m, b in movies.items()}
    if globals_blob is not None:
        blobs[names.globals_features_key(VERSION)] = globals_blob
    store = MemoryFeatureStore(blobs)
    handler = ScorerHandler(store, refusing_model, clock=lambda: 1_000.0)  # type: ignore[arg-type]
    messages = batch(batch_payloads)
    result = handler(messages)  # must not raise
    letters = dead_letters(result.outputs)
    predictions = [o for o in result.outputs if o.topic == names.TOPIC_PREDICTIONS]
    assert len(letters) + len(predictions) == len(messages)
    for msg in messages:
        parsed = outcome(RatingRequest, msg.payload)
        if isinstance(parsed, PoisonMessageError):
            assert letters[msg.offset_].reason == parsed.reason
            continue
        assert isinstance(parsed, RatingRequest)
        fine = features_in_bounds(users.get(parsed.user_id), movies.get(parsed.movie_id), globals_blob, parsed.event_ts)
        if fine:
            assert msg.offset_ not in letters, letters[msg.offset_].error
        else:
            assert letters[msg.offset_].reason in ("bad_feature_blob", "scoring_error")


def test_scorer_refuses_a_forged_user_whose_mean_leaves_the_feature_bounds() -> None:
    """The smallest case of the property above: a user blob that unpacks (its count 2**41 is within unpack_user's
    bound) gives user_count 2.2e12 > MAX_FEATURE_MAGNITUDE, so no Prediction can carry it."""
    forged = packing.pack_user(spec.UserState(count=2**41, total=1e12))
    assert isinstance(packing.unpack_user(forged), spec.UserState)
    store = MemoryFeatureStore({names.user_features_key(VERSION, 1): forged})
    handler = ScorerHandler(store, refusing_model)  # type: ignore[arg-type]
    good = RatingRequest(request_id="ok", user_id=2, movie_id=10, event_ts=5, sent_at=1.0)
    bad = RatingRequest(request_id="forged", user_id=1, movie_id=10, event_ts=5, sent_at=1.0)
    result = handler([Msg(bad.encode(), offset_=0), Msg(good.encode(), offset_=1)])
    letters = dead_letters(result.outputs)
    assert letters[0].reason == "bad_feature_blob"
    assert [Prediction.model_validate_json(o.value).request_id for o in result.outputs if o.topic != DLQ] == ["ok"]


@PROPERTY
@given(scorer_worlds(corrupt=False), st.lists(request_fields(movies=MOVIES), min_size=1, max_size=12))
def test_scorer_predicts_every_valid_request_on_valid_states(
    world: ScorerWorld, requests: list[dict[str, Any]]
) -> None:
    handler = ScorerHandler(world.store, refusing_model, clock=lambda: 1_000.0)  # type: ignore[arg-type]
    check_scorer_batch(handler, batch([dumps(r) for r in requests]), lambda _: None)


# The feature updater.


@dataclass
class UpdaterWorld:
    store: MemoryFeatureStore
    initial: spec.FeatureState
    bad_users: set[int]
    bad_movies: set[int]
    bad_globals: bool


@st.composite
def updater_worlds(draw: st.DrawFn) -> UpdaterWorld:
    blobs: dict[str, bytes] = {}
    initial = spec.FeatureState()
    bad_users: set[int] = set()
    bad_movies: set[int] = set()
    for user in USERS:
        kind = draw(st.integers(0, 3))
        if kind in (1, 2):
            blob = draw(st.sampled_from(GOOD_USER_BLOBS))
            blobs[names.user_features_key(VERSION, user)] = blob
            initial.users[user] = packing.unpack_user(blob)
        elif kind == 3:
            blobs[names.user_features_key(VERSION, user)] = draw(corrupt_blobs("user"))
            bad_users.add(user)
    for movie in MOVIES:
        kind = draw(st.integers(0, 3))
        if kind in (1, 2):
            blob = draw(st.sampled_from(GOOD_MOVIE_BLOBS))
            blobs[names.movie_features_key(VERSION, movie)] = blob
            initial.movies[movie] = packing.unpack_movie(blob)
        elif kind == 3:
            blobs[names.movie_features_key(VERSION, movie)] = draw(corrupt_blobs("movie"))
            bad_movies.add(movie)
    bad_globals = draw(st.integers(0, 9)) == 0
    if bad_globals:
        blobs[names.globals_features_key(VERSION)] = draw(corrupt_blobs("globals"))
    elif draw(st.booleans()):
        blobs[names.globals_features_key(VERSION)] = GOOD_GLOBALS_BLOB
        initial.globals = packing.unpack_globals(GOOD_GLOBALS_BLOB)
    return UpdaterWorld(MemoryFeatureStore(blobs), initial, bad_users, bad_movies, bad_globals)


def run(result: BatchResult) -> None:
    if result.sink is not None:
        result.sink()


@PROPERTY
@given(updater_worlds(), mixed(feedback_fields(), max_size=14), st.randoms(use_true_random=False))
def test_updater_applies_each_rating_once_and_accounts_for_every_feedback(
    world: UpdaterWorld, batch_payloads: list[bytes | None], rng: Any
) -> None:
    store = world.store
    handler = FeatureUpdaterHandler(store, clock=lambda: 1_000.0)  # type: ignore[arg-type]
    messages = batch(batch_payloads, [names.TOPIC_FEEDBACK] * len(batch_payloads))
    result = handler(messages)
    assert all(o.topic == DLQ for o in result.outputs)
    letters = dead_letters(result.outputs)
    assert sorted(result.refused) == sorted(d.reason for d in letters.values())

    expected = world.initial
    fresh: dict[str, Feedback] = {}
    for msg in messages:
        parsed = outcome(Feedback, msg.payload)
        if isinstance(parsed, PoisonMessageError):
            assert letters[msg.offset_].reason == parsed.reason
            continue
        assert isinstance(parsed, Feedback)
        if world.bad_globals or parsed.user_id in world.bad_users or parsed.movie_id in world.bad_movies:
            assert letters[msg.offset_].reason == "bad_feature_blob", letters[msg.offset_].error
            continue
        assert msg.offset_ not in letters, letters[msg.offset_].error
        fresh.setdefault(parsed.rating_id, parsed)
    assert len(letters) + sum(1 for m in messages if m.offset_ not in letters) == len(messages)

    run(result)
    assert store.applied.get(VERSION, set()) == set(fresh)
    for f in sorted(fresh.values(), key=lambda f: (f.event_ts, f.user_id, f.movie_id)):
        expected.apply(f.user_id, f.movie_id, f.rating, f.event_ts)
    for f in fresh.values():
        assert (
            packing.unpack_user(store.blobs[names.user_features_key(VERSION, f.user_id)]) == expected.users[f.user_id]
        )
        assert (
            packing.unpack_movie(store.blobs[names.movie_features_key(VERSION, f.movie_id)])
            == (expected.movies[f.movie_id])
        )
    if fresh:
        assert packing.unpack_globals(store.blobs[names.globals_features_key(VERSION)]) == expected.globals
    assert len(store.latencies) == sum(f.sent_at is not None for f in fresh.values())

    # The same ratings again, carried by other requests and in another order: nothing changes.
    before = (dict(store.blobs), set(store.applied.get(VERSION, set())))
    again = [Feedback(**{**f.model_dump(), "request_id": f"again-{k}"}).encode() for k, f in enumerate(fresh.values())]
    rng.shuffle(again)
    replay = handler(batch(again, [names.TOPIC_FEEDBACK] * len(again)))
    assert replay.outputs == [] and replay.refused == []
    run(replay)
    assert (store.blobs, store.applied.get(VERSION, set())) == before


def test_a_batch_applied_between_another_batchs_read_and_its_write_is_not_lost() -> None:
    """Two updaters: B's batch is read after A's and written before it. A's write applies to the states as B left
    them, so both batches count, in the order their writes ran."""
    store = MemoryFeatureStore({names.globals_features_key(VERSION): GOOD_GLOBALS_BLOB})
    a, b = (FeatureUpdaterHandler(store, clock=lambda: 1_000.0) for _ in range(2))  # type: ignore[arg-type]
    first = [Feedback(request_id=f"a{i}", user_id=1, movie_id=10, rating=4.0, event_ts=100 + i) for i in range(3)]
    second = [Feedback(request_id=f"b{i}", user_id=2, movie_id=10, rating=2.5, event_ts=200 + i) for i in range(2)]
    result_a = a(batch([f.encode() for f in first], [names.TOPIC_FEEDBACK] * 3))
    run(b(batch([f.encode() for f in second], [names.TOPIC_FEEDBACK] * 2)))
    run(result_a)
    expected = spec.FeatureState(globals=packing.unpack_globals(GOOD_GLOBALS_BLOB))
    for f in [*second, *first]:
        expected.apply(f.user_id, f.movie_id, f.rating, f.event_ts)
    assert store.applied[VERSION] == {f.rating_id for f in [*first, *second]}
    assert packing.unpack_movie(store.blobs[names.movie_features_key(VERSION, 10)]) == expected.movies[10]
    assert packing.unpack_globals(store.blobs[names.globals_features_key(VERSION)]) == expected.globals


# The metrics aggregator.


@settings(PROPERTY, max_examples=150)  # the slowest: each example runs a snapshot and writes a metric log
@given(
    st.lists(
        st.tuples(st.sampled_from(["preds", "fb", "dlq"]), st.data()),
        min_size=1,
        max_size=12,
    ),
    st.booleans(),
)
def test_metrics_accounts_for_every_message(topics_and_data: list[tuple[str, Any]], publish: bool) -> None:
    request_ids = st.sampled_from(["a", "b", "c", "d"])
    strategies = {
        "preds": payloads(prediction_fields(request_ids)) | prediction_fields(request_ids).map(dumps),
        "fb": payloads(feedback_fields().map(lambda f: {**f, "request_id": f["request_id"][:1]}))
        | feedback_fields().map(lambda f: dumps({**f, "request_id": "abcd"[f["user_id"]]})),
        "dlq": st.binary(max_size=20) | st.none(),
    }
    topics = [t for t, _ in topics_and_data]
    messages = batch([data.draw(strategies[t]) for t, data in topics_and_data], topics)
    with tempfile.TemporaryDirectory() as tmp:
        redis = FakeRedis()
        handler = MetricsHandler(
            RedisMetricsStore(redis),  # type: ignore[arg-type]
            MetricLog(Path(tmp) / "log.csv"),
            lambda: {"0": 3},
            publish_every=0.0 if publish else 3_600.0,
            metrics_topic="m",
            feedback_topic="fb",
            dlq_topic="dlq",
            clock=lambda: 1_000.0,
        )
        result = handler(messages)
        letters = dead_letters(result.outputs, topic="dlq")
        refused = pending_preds = pending_fb = joined = dlq = 0
        waiting: dict[str, dict[str, int]] = {"preds": {}, "fb": {}}
        for msg in messages:
            if msg.topic_ == "dlq":
                dlq += 1
                continue
            parsed = outcome(Prediction if msg.topic_ == "preds" else Feedback, msg.payload)
            if isinstance(parsed, PoisonMessageError):
                refused += 1
                if msg.topic_ == "preds":
                    assert letters[msg.offset_].reason == parsed.reason
                else:
                    assert msg.offset_ not in letters  # bad feedback is only counted
                continue
            assert msg.offset_ not in letters
            other = "fb" if msg.topic_ == "preds" else "preds"
            rid = parsed.request_id  # type: ignore[attr-defined]
            if rid in waiting[other]:
                del waiting[other][rid]
                joined += 1
            else:
                waiting[msg.topic_][rid] = 1
        pending_preds, pending_fb = len(waiting["preds"]), len(waiting["fb"])
        state = handler.state
        assert (state.refused_total, state.dlq_total, state.joined_total) == (refused, dlq, joined)
        assert (len(state.predictions), len(state.feedback)) == (pending_preds, pending_fb)
        assert len(letters) == sum(1 for m in messages if m.topic_ == "preds") - sum(
            1 for m in messages if m.topic_ == "preds" and isinstance(outcome(Prediction, m.payload), Message)
        )
        snapshots = [o for o in result.outputs if o.topic == "m"]
        assert len(snapshots) == (1 if publish else 0)
        assert result.sink is not None
        result.sink()
        if publish:
            snap = MetricsSnapshot.model_validate_json(snapshots[0].value)
            assert (snap.joined_total, snap.dlq_total, snap.refused_total) == (joined, dlq, refused)
            assert names.METRICS_LATEST in redis.store
        assert len(redis.store.get(names.METRICS_ERRORS, [])) == joined
        assert len((Path(tmp) / "log.csv").read_text().splitlines()) == 1 + joined


# The worker.

BOOM = b"boom"


@dataclass
class EchoHandler:
    """Echoes each message to ``out`` and records it in its sink; raises ValueError on a batch holding BOOM."""

    sunk: list[int] = field(default_factory=list)
    calls: int = 0

    def __call__(self, messages: Sequence[Any]) -> BatchResult:
        self.calls += 1
        if any(m.value() is not None and m.value().startswith(BOOM) for m in messages):
            raise ValueError("a bug this message triggers")
        offsets = [m.offset() for m in messages]
        outputs = [Output("out", None, str(m.offset()).encode()) for m in messages]
        return BatchResult(outputs, lambda: self.sunk.extend(offsets))


def committed(consumer: FakeConsumer) -> dict[tuple[str, int], int]:
    assert len(consumer.commits) == 1
    return {(tp.topic, tp.partition): tp.offset for tp in consumer.commits[0]}


def expected_commit(messages: Sequence[Msg]) -> dict[tuple[str, int], int]:
    highest: dict[tuple[str, int], int] = {}
    for m in messages:
        highest[(m.topic_, m.partition_)] = max(highest.get((m.topic_, m.partition_), -1), m.offset_)
    return {key: offset + 1 for key, offset in highest.items()}


@PROPERTY
@given(st.lists(st.binary(max_size=12) | st.none() | st.binary(max_size=4).map(lambda b: BOOM + b), max_size=40))
def test_worker_dead_letters_exactly_the_messages_a_handler_fails_on(batch_payloads: list[bytes | None]) -> None:
    consumer, producer, handler = FakeConsumer(), FakeProducer(), EchoHandler()
    messages = batch(batch_payloads)
    Worker(consumer, producer, ["t"], handler).process(messages)
    boom = {m.offset_ for m in messages if m.payload is not None and m.payload.startswith(BOOM)}
    letters = dead_letters([Output(t, None, v) for t, v in producer.produced])
    assert set(letters) == boom
    assert all(d.reason == "handler_error" and "ValueError" in d.error for d in letters.values())
    echoed = sorted(int(v) for t, v in producer.produced if t == "out")
    assert echoed == sorted(m.offset_ for m in messages if m.offset_ not in boom)
    assert sorted(handler.sunk) == echoed  # every sink ran once, and only for the handled messages
    assert len(producer.produced) == len(messages)
    if messages:
        assert committed(consumer) == expected_commit(messages)
    if not boom:
        assert handler.calls == 1


@PROPERTY
@given(scorer_worlds(), mixed(request_fields(movies=SCORED_MOVIES), max_size=20))
def test_worker_with_the_scorer_delivers_every_request_and_commits(
    world: ScorerWorld, batch_payloads: list[bytes | None]
) -> None:
    consumer, producer = FakeConsumer(), FakeProducer()
    handler = ScorerHandler(world.store, refusing_model, clock=lambda: 1_000.0)  # type: ignore[arg-type]
    messages = batch(batch_payloads)
    Worker(consumer, producer, ["t"], handler).process(messages)
    letters = dead_letters([Output(t, None, v) for t, v in producer.produced])
    predictions = [Prediction.model_validate_json(v) for t, v in producer.produced if t == names.TOPIC_PREDICTIONS]
    assert len(letters) + len(predictions) == len(messages) == len(producer.produced)
    assert all(d.reason != "handler_error" for d in letters.values()), [d.error for d in letters.values()]
    assert committed(consumer) == expected_commit(messages)
    assert set(world.store.predictions) == {names.prediction_key(p.request_id) for p in predictions}


@PROPERTY
@given(updater_worlds(), mixed(feedback_fields(), max_size=20))
def test_worker_with_the_updater_delivers_every_feedback_and_commits(
    world: UpdaterWorld, batch_payloads: list[bytes | None]
) -> None:
    consumer, producer = FakeConsumer(), FakeProducer()
    handler = FeatureUpdaterHandler(world.store, clock=lambda: 1_000.0)  # type: ignore[arg-type]
    messages = batch(batch_payloads, [names.TOPIC_FEEDBACK] * len(batch_payloads))
    Worker(consumer, producer, ["t"], handler).process(messages)
    letters = dead_letters([Output(t, None, v) for t, v in producer.produced])
    assert all(t == DLQ for t, _ in producer.produced)
    assert all(d.reason != "handler_error" for d in letters.values()), [d.error for d in letters.values()]
    valid = [m for m in messages if m.offset_ not in letters]
    applied = world.store.applied.get(VERSION, set())
    for m in valid:
        parsed = parse(Feedback, m.payload)
        assert isinstance(parsed, Feedback) and parsed.rating_id in applied
    assert committed(consumer) == expected_commit(messages)


@pytest.mark.parametrize("culprit", [0, 3, 6])
def test_worker_isolates_one_culprit_among_valid_requests(culprit: int) -> None:
    store = MemoryFeatureStore({names.globals_features_key(VERSION): GOOD_GLOBALS_BLOB})
    scorer = ScorerHandler(store, refusing_model, clock=lambda: 1_000.0)  # type: ignore[arg-type]
    requests = [RatingRequest(request_id=f"r{i}", user_id=1, movie_id=10, event_ts=i, sent_at=1.0) for i in range(7)]

    def handler(messages: Sequence[Any]) -> BatchResult:
        if any(m.offset() == culprit for m in messages):
            raise ValueError(f"bug on offset {culprit}")
        return scorer(messages)

    consumer, producer = FakeConsumer(), FakeProducer()
    messages = [Msg(r.encode(), offset_=i) for i, r in enumerate(requests)]
    Worker(consumer, producer, ["t"], handler).process(messages)
    letters = dead_letters([Output(t, None, v) for t, v in producer.produced])
    assert list(letters) == [culprit] and letters[culprit].reason == "handler_error"
    assert f"bug on offset {culprit}" in letters[culprit].error
    assert RatingRequest.model_validate_json(letters[culprit].payload) == requests[culprit]
    predicted = sorted(Prediction.model_validate_json(v).request_id for t, v in producer.produced if t != DLQ)
    assert predicted == sorted(f"r{i}" for i in range(7) if i != culprit)
    assert set(store.predictions) == {names.prediction_key(r) for r in predicted}
    assert committed(consumer) == {(names.TOPIC_REQUESTS, 0): 7}
