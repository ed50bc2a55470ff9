"""movielens_training end to end on the real stack: Airflow runs ingest -> validate -> Spark features -> Redis; and the
same feature job on the stack's Spark standalone cluster writes what local mode wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis
from mlflow.tracking import MlflowClient

from streamml import names, tasks
from streamml.airflow_client import trigger_and_wait
from streamml.config import Settings
from streamml.data import movielens
from streamml.features import packing, snapshot_rows, spec
from streamml.features.batch import PARTS, read_manifest, read_part
from streamml.stores.objects import ObjectStore, s3_filesystem

pytestmark = [
    pytest.mark.integration,
    pytest.mark.airflow,
    pytest.mark.spark,
    pytest.mark.minio,
    pytest.mark.redis,
    pytest.mark.slow,
]


def test_parquet_row_counts_equal_the_split(settings: Settings, training_run: dict, movielens_dir: Path) -> None:  # type: ignore[type-arg]
    manifest = training_run["manifest"]
    ratings, _ = movielens.load(movielens_dir)
    history, stream, cutoff = movielens.time_split(ratings, manifest["quantile"])
    assert manifest["cutoff_ts"] == cutoff
    version = manifest["version"]
    assert read_part(settings, version, "history").num_rows == len(history)
    assert read_part(settings, version, "stream").num_rows == len(stream)
    assert read_part(settings, version, "users").num_rows == history["userId"].nunique()


def test_redis_snapshot_matches_an_independent_replay(
    settings: Settings, training_run: dict, movielens_dir: Path
) -> None:  # type: ignore[type-arg]
    manifest = training_run["manifest"]
    version = manifest["version"]
    ratings, movies = movielens.load(movielens_dir)
    history, _, _ = movielens.time_split(ratings, manifest["quantile"])
    state = spec.FeatureState.from_movies(movies)
    spec.point_in_time_features(state, history)
    client = redis.Redis.from_url(settings.redis.url)
    rng = np.random.default_rng(7)
    users = rng.choice(history["userId"].unique(), size=25, replace=False)
    ts = int(manifest["cutoff_ts"])
    globals_state = packing.unpack_globals(client.get(names.globals_features_key(version)))
    for user_id in users:
        blob = client.get(names.user_features_key(version, int(user_id)))
        assert blob is not None, user_id
        assert packing.unpack_user(blob) == state.users[int(user_id)]
        movie_id = int(movies["movieId"].iloc[int(user_id) % len(movies)])
        online = spec.features_from_states(
            packing.unpack_user(blob),
            packing.unpack_movie(client.get(names.movie_features_key(version, movie_id))),
            globals_state,
            ts,
        )[0]
        assert np.allclose(online, state.features(int(user_id), movie_id, ts), atol=1e-9)


def test_features_upgrade_rematerializes_a_version_held_in_another_state_format(
    settings: Settings,
    training_run: dict,  # type: ignore[type-arg]
    redis_db: redis.Redis,
) -> None:
    """After an upgrade that changed the layout, Redis still holds the old blobs: ``streamml features upgrade`` (run
    by ``./run.sh deploy`` and ``up``) loads the version again from its snapshot; a second run leaves it alone."""
    manifest = training_run["manifest"]
    version = manifest["version"]
    redis_db.set(names.FEATURE_VERSION_CURRENT, str(version))
    old = msgpack.packb([2, 10, 35.0, 5])  # format 2 (msgpack)
    redis_db.set(names.globals_features_key(version), old)
    redis_db.set(names.user_features_key(version, 1), b"stale")
    cli = [str(Path(sys.executable).with_name("streamml")), "features", "upgrade"]
    env = {**os.environ, "STREAMML_REDIS__DB": "9"}
    first = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300, check=True)  # noqa: S603
    assert f"globals state blob: {len(old)} bytes, not the 26 of state format 3" in first.stdout, first.stdout
    assert "materializing it again" in first.stdout
    assert packing.unpack_globals(redis_db.get(names.globals_features_key(version))) == snapshot_rows.globals_from_row(
        manifest["globals"]
    )
    users = read_part(settings, version, "users", columns=["userId"]).column("userId").to_pylist()
    assert all(isinstance(packing.unpack_user(blob), spec.UserState) for blob in redis_db.mget(
        [names.user_features_key(version, u) for u in users]
    ))  # fmt: skip
    second = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120, check=True)  # noqa: S603
    assert "is in Redis in state format 3, as this code reads" in second.stdout, second.stdout


def test_training_run_leaves_a_champion_with_artifacts_in_minio(settings: Settings, training_run: dict) -> None:  # type: ignore[type-arg]
    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    champion = client.get_model_version_by_alias(names.MODEL_NAME, names.ALIAS_CHAMPION)
    metrics = client.get_run(champion.run_id).data.metrics
    assert metrics["streaming_auc"] > metrics["streaming_baseline_user_auc"]
    keys = list(ObjectStore(settings.minio, names.BUCKET_MLFLOW).keys(""))
    assert any(k.endswith(f"{champion.run_id}/artifacts/confusion_matrix.json") for k in keys), keys[:20]


def test_rerun_keeps_the_features_and_a_worse_model_does_not_displace_the_champion(
    settings: Settings,
    training_run: dict,  # type: ignore[type-arg]
    movielens_dir: Path,
) -> None:
    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    champion = client.get_model_version_by_alias(names.MODEL_NAME, names.ALIAS_CHAMPION).version
    worse = {"model_type": "logreg", "logreg": {"C": 1e-6, "max_iter": 5}}
    conf = {"movielens_dir": str(movielens_dir), "model": worse}
    status = trigger_and_wait(settings.airflow, names.DAG_TRAINING, conf, timeout=900)
    assert status.state == "success", status.tasks
    again = read_manifest(settings, training_run["manifest"]["version"])
    assert again["version"] == training_run["manifest"]["version"]
    assert again["rows"] == training_run["manifest"]["rows"]
    assert int(redis.Redis.from_url(settings.redis.url).get(names.FEATURE_VERSION_CURRENT)) == again["version"]
    assert client.get_model_version_by_alias(names.MODEL_NAME, names.ALIAS_CHAMPION).version == champion
    challenger = client.get_model_version_by_alias(names.MODEL_NAME, names.ALIAS_CHALLENGER)
    assert int(challenger.version) > int(champion)


def test_batch_scoring_scores_the_whole_stream_period_with_the_champion(settings: Settings, training_run: dict) -> None:  # type: ignore[type-arg]
    status = trigger_and_wait(settings.airflow, names.DAG_BATCH_SCORING, timeout=600)
    assert status.state == "success", status.tasks
    version = training_run["manifest"]["version"]
    champion = MlflowClient(tracking_uri=settings.mlflow.tracking_uri).get_model_version_by_alias(
        names.MODEL_NAME, names.ALIAS_CHAMPION
    )
    key = f"v{version}/scores/{names.MODEL_NAME}-v{champion.version}.parquet"
    table = pq.read_table(f"{names.BUCKET_FEATURES}/{key}", filesystem=s3_filesystem(settings.minio))
    assert table.num_rows == training_run["manifest"]["rows"]["stream"]
    scores = table.column("score").to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()


def test_the_feature_job_on_the_standalone_cluster_writes_what_local_mode_wrote(
    settings: Settings,
    training_run: dict,  # type: ignore[type-arg]
    require: Callable[[str], None],
) -> None:
    """The job the DAG ran with local[*], again with STREAMML_SPARK__MASTER on the spark-master program: the same
    inputs give the same version number, so it rewrites that version, and every part must come back row for row."""
    require("spark")
    manifest = read_manifest(settings, training_run["manifest"]["version"])
    version = manifest["version"]
    local = {part: _sorted(read_part(settings, version, part).to_pandas()) for part in PARTS}
    sp = settings.spark
    on_cluster = settings.model_copy(update={"spark": sp.model_copy(update={"master": sp.cluster_url})})
    again = tasks.build_features(on_cluster, manifest["snapshot"], manifest["quantile"])
    assert again == manifest
    for part in PARTS:
        pd.testing.assert_frame_equal(_sorted(read_part(settings, version, part).to_pandas()), local[part])
    master = httpx.get(f"http://{sp.host}:{sp.master_ui_port}/json/", timeout=10).json()
    ran = [a for a in master["completedapps"] if a["name"] == "streamml-build-features"]
    assert ran and ran[-1]["state"] == "FINISHED", master["completedapps"]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in ("userId", "movieId", "timestamp") if c in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)
