"""Predictions through the scorer's own code path (same features, same model, same cold-start rule)."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter

from streamml.api.deps import Deps
from streamml.api.schemas import BAD_BODY, PredictionOut, PredictRequest, PredictResponse, Problem
from streamml.errors import PoisonMessageError
from streamml.streaming.messages import Prediction, RatingRequest

router = APIRouter(tags=["predict"])


@router.post(
    "/predict",
    summary="Score one or many (user, movie) pairs with @champion",
    responses={
        **BAD_BODY,
        422: {"model": Problem, "description": "a pair cannot be scored (its online state is unreadable)"},
        503: {"model": Problem, "description": "no champion or no online features yet, or Redis is down"},
    },
)
def predict(body: PredictRequest, deps: Deps) -> PredictResponse:
    now = time.time()
    requests = [
        RatingRequest(
            request_id=f"api-{uuid.uuid4().hex}",
            user_id=item.user_id,
            movie_id=item.movie_id,
            event_ts=item.event_ts if item.event_ts is not None else int(now),
            sent_at=now,
        )
        for item in body.items
    ]
    with deps.model_lock:  # one model (re)load at a time; scoring itself is fast
        outcomes = deps.scorer.score(requests)
    refused = [(item, o) for item, o in zip(body.items, outcomes, strict=True) if isinstance(o, PoisonMessageError)]
    if refused:
        item, error = refused[0]
        raise PoisonMessageError(
            f"cannot score user {item.user_id} movie {item.movie_id} ({error.reason}): {error}", error.reason
        )
    return PredictResponse(
        predictions=[PredictionOut.model_validate(o.model_dump()) for o in outcomes if isinstance(o, Prediction)]
    )
