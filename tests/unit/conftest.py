from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamml.data.movielens import synthesize


@pytest.fixture(scope="session")
def movielens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MovieLens CSVs: $STREAMML_MOVIELENS_DIR when set, else a small synthetic set written to a temp dir."""
    if configured := os.environ.get("STREAMML_MOVIELENS_DIR"):
        return Path(configured)
    directory = tmp_path_factory.mktemp("movielens")
    ratings, movies = synthesize(n_ratings=6000, n_users=150, n_movies=700, seed=11)
    ratings.to_csv(directory / "ratings.csv", index=False)
    movies.to_csv(directory / "movies.csv", index=False)
    return directory
