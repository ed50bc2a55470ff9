"""The data of a training run: the history to fit on and the stream set to evaluate on, read from a feature version
in MinIO or computed in-process from MovieLens frames (the same features either way)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from streamml import names
from streamml.config import Settings
from streamml.errors import DataValidationError
from streamml.features import spec
from streamml.models import evaluate as ev

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

_SORT = [("timestamp", "ascending"), ("userId", "ascending"), ("movieId", "ascending")]


@dataclass(frozen=True)
class Dataset:
    """History features/labels to train on and the stream set to evaluate on."""

    train_features: np.ndarray
    train_labels: np.ndarray
    stream: ev.StreamSet
    feature_version: int | None = None
    lagged_stream: Callable[[int], np.ndarray] | None = None
    """Streaming-mode features of the stream rows with feedback ``lag`` seconds late (a replay of every rating with
    :meth:`~streamml.features.spec.FeatureState.point_in_time`'s ``lag``), for the freshness curve."""


def _lagged(state: Callable[[], spec.FeatureState], ordered: Any, stream_rows: int) -> Callable[[int], np.ndarray]:
    def replay(lag: int) -> np.ndarray:
        return spec.point_in_time_features(state(), ordered, lag)[len(ordered) - stream_rows :]

    return replay


def _matrix(table: Any, part: str) -> np.ndarray:
    missing = [name for name in spec.FEATURE_NAMES if name not in table.column_names]
    if missing:
        raise DataValidationError(f"features part {part}: missing column(s) {', '.join(missing)}")
    columns = [table.column(name).to_numpy(zero_copy_only=False) for name in spec.FEATURE_NAMES]
    matrix = np.column_stack(columns).astype(np.float64) if columns else np.empty((table.num_rows, 0))
    if np.isnan(matrix).any():
        row, column = np.argwhere(np.isnan(matrix))[0]
        raise DataValidationError(f"features part {part}: row {row}: {spec.FEATURE_NAMES[column]} is null")
    return matrix


def load_dataset(settings: Settings, version: int) -> Dataset:
    """The training and evaluation data of a feature version in MinIO (both modes of the stream)."""
    import pyarrow as pa

    from streamml.features.batch import read_manifest, read_part

    manifest = read_manifest(settings, version)
    if tuple(manifest.get("feature_names", ())) != spec.FEATURE_NAMES:
        raise DataValidationError(f"feature version {version} was built by another feature definition")
    history = read_part(settings, version, "history").sort_by(_SORT)
    stream = read_part(settings, version, "stream").sort_by(_SORT)
    users, movies, globals_ = ev.snapshot_states(
        read_part(settings, version, "users").to_pylist(),
        read_part(settings, version, "movies").to_pylist(),
        manifest["globals"],
    )
    frozen = ev.frozen_features(
        users,
        movies,
        globals_,
        stream.column("userId").to_numpy(),
        stream.column("movieId").to_numpy(),
        stream.column("timestamp").to_numpy(),
    )
    train_labels = history.column(spec.LABEL).to_numpy().astype(np.int64)
    stream_labels = stream.column(spec.LABEL).to_numpy().astype(np.int64)
    keys = ["userId", "movieId", "rating", "timestamp"]
    ordered = pa.concat_tables([history.select(keys), stream.select(keys)]).to_pandas()
    catalog = {movie_id: spec.MovieState(genres=m.genres, year=m.year) for movie_id, m in movies.items()}
    logger.info("loaded feature version=%d history=%d stream=%d", version, len(train_labels), len(stream_labels))
    return Dataset(
        train_features=_matrix(history, "history"),
        train_labels=train_labels,
        stream=ev.StreamSet(
            labels=stream_labels,
            features={ev.STREAMING: _matrix(stream, "stream"), ev.FROZEN: frozen},
            history_like_rate=float(train_labels.mean()),
        ),
        feature_version=version,
        lagged_stream=_lagged(lambda: spec.FeatureState(movies=copy.deepcopy(catalog)), ordered, len(stream_labels)),
    )


def dataset_from_ratings(
    ratings: pd.DataFrame, movies: pd.DataFrame, quantile: float = names.SPLIT_QUANTILE
) -> Dataset:
    """The same data computed in-process from MovieLens frames (spec replay, no Spark, no MinIO)."""
    import pandas as pd

    from streamml.data.movielens import time_split

    history, stream, _ = time_split(ratings, quantile)
    state = spec.FeatureState.from_movies(movies)
    train_features = spec.point_in_time_features(state, history)
    # The state now is the snapshot at the cutoff: freeze the stream's features before replaying it.
    frozen = ev.frozen_features(
        state.users,
        state.movies,
        state.globals,
        stream["userId"].to_numpy(),
        stream["movieId"].to_numpy(),
        stream["timestamp"].to_numpy(),
    )
    streaming = spec.point_in_time_features(state, stream)
    train_labels = (history["rating"].to_numpy() >= spec.LIKE_THRESHOLD).astype(np.int64)
    stream_labels = (stream["rating"].to_numpy() >= spec.LIKE_THRESHOLD).astype(np.int64)
    return Dataset(
        train_features=train_features,
        train_labels=train_labels,
        stream=ev.StreamSet(
            labels=stream_labels,
            features={ev.STREAMING: streaming, ev.FROZEN: frozen},
            history_like_rate=float(train_labels.mean()),
        ),
        lagged_stream=_lagged(
            lambda: spec.FeatureState.from_movies(movies), pd.concat([history, stream], ignore_index=True), len(stream)
        ),
    )
