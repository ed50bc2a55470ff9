"""Request and response bodies of the API."""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Ge, Le
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from streamml.bounds import MAX_ID, MAX_TIMESTAMP


def _json_integer(value: Any) -> Any:
    """What JSON Schema's ``integer`` (the OpenAPI schema) accepts: a number without a fraction (``12``, ``12.0``),
    not ``true``/``false`` and not ``"12"``, which pydantic's lax int would take."""
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer")
    return value


JsonInteger = Annotated[int, BeforeValidator(_json_integer)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pair(_Body):
    user_id: JsonInteger = Field(ge=0, le=MAX_ID, description="MovieLens user id.")
    movie_id: JsonInteger = Field(ge=0, le=MAX_ID, description="MovieLens movie id.")
    # Optional: the bounds go inside the union's integer (as Field(ge=, le=) they would not reach the OpenAPI)
    event_ts: Annotated[int, Ge(0), Le(MAX_TIMESTAMP), BeforeValidator(_json_integer)] | None = Field(
        None, description="Event time (unix seconds) the features are taken at; default now."
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
    conf: dict[str, Any] = Field(
        default_factory=dict,
        description="DAG run conf: the params the API lets callers set for that DAG (see TrainingConf, RetrainConf; "
        "batch_scoring takes none). Filesystem paths such as movielens_dir are not accepted here.",
    )


class TrainingConf(_Body):
    quantile: float | None = Field(None, ge=0.5, le=0.995, description="Time split quantile.")
    model: dict[str, Any] = Field(default_factory=dict, description='Model config, e.g. {"model_type": "logreg"}.')
    promotion_margin: float | None = Field(None, ge=0, le=1, description="AUC margin over the champion.")


class RetrainConf(_Body):
    reason: str | None = Field(None, max_length=500, description="Why this run.")
    model: dict[str, Any] = Field(default_factory=dict, description="Model config.")
    min_shadow_pairs: int | None = Field(None, ge=1, description="Shadowed requests the online gate needs.")
    shadow_wait_seconds: float | None = Field(None, ge=0, le=86400, description="How long the gate waits for them.")
    promotion_margin: float | None = Field(None, ge=0, le=1, description="AUC margin over the champion.")


class NoConf(_Body):
    pass


class TriggerResponse(BaseModel):
    dag_id: str
    run_id: str
    state: str


class Problem(BaseModel):
    """Every error body: 4xx say what was wrong with the request, 5xx which dependency failed (its own words stay in
    the API log)."""

    detail: str


# FastAPI answers 400 itself when a body is not JSON at all (before validation, which answers 422)
BAD_BODY: dict[int | str, dict[str, Any]] = {400: {"model": Problem, "description": "the body is not JSON"}}
