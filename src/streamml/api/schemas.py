"""Request and response bodies of the API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from streamml.bounds import MAX_ID, MAX_TIMESTAMP


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pair(_Body):
    user_id: int = Field(ge=0, le=MAX_ID, description="MovieLens user id.")
    movie_id: int = Field(ge=0, le=MAX_ID, description="MovieLens movie id.")
    event_ts: int | None = Field(
        None, ge=0, le=MAX_TIMESTAMP, description="Event time (unix seconds) the features are taken at; default now."
    )


class PredictRequest(_Body):
    items: list[Pair] = Field(min_length=1, max_length=1000, description="(user, movie) pairs to score.")


class PredictionOut(BaseModel):
    request_id: str
    user_id: int
    movie_id: int
    score: float = Field(description="P(rating >= 4.0).")
    label: int = Field(description="1 when score >= the model's threshold.")
    cold_start: bool = Field(description="The user or the movie has no history: prior features were used.")
    model_name: str
    model_version: str
    feature_version: int


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]


class TriggerRequest(_Body):
    conf: dict[str, Any] = Field(default_factory=dict, description="DAG run conf (the DAG's params).")


class TriggerResponse(BaseModel):
    dag_id: str
    run_id: str
    state: str


class Problem(BaseModel):
    detail: str
