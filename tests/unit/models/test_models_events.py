from __future__ import annotations

import math

import pytest

from streamml.errors import PoisonMessageError
from streamml.models.events import ModelEvent, finite_metrics


def _event() -> ModelEvent:
    return ModelEvent(
        kind="promoted",
        model_name="movielens-like",
        version=3,
        alias="champion",
        run_id="abc123",
        previous_version=2,
        metrics={"streaming_auc": 0.81},
        reason="better",
    )


def test_round_trip_keeps_every_field_and_the_schema_version() -> None:
    event = _event()
    back = ModelEvent.from_bytes(event.to_bytes())
    assert back == event
    assert back.schema_version == 1
    assert back.timestamp.tzinfo is not None
    assert back.model_uri == "models:/movielens-like/3"


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"not json",
        b'{"schema_version": 2, "kind": "promoted", "model_name": "m", "version": 1, "alias": "a", "run_id": "r"}',
        b'{"schema_version": 1, "kind": "deleted", "model_name": "m", "version": 1, "alias": "a", "run_id": "r"}',
        b'{"schema_version": 1, "kind": "promoted", "model_name": "m", "version": 0, "alias": "a", "run_id": "r"}',
    ],
)
def test_invalid_messages_are_poison(raw: bytes | None) -> None:
    with pytest.raises(PoisonMessageError):
        ModelEvent.from_bytes(raw)


def test_finite_metrics_drops_what_json_cannot_carry() -> None:
    assert finite_metrics({"a": 0.5, "b": math.nan, "c": math.inf}) == {"a": 0.5}
