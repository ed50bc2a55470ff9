"""Where the checkout's own files are: the repository root and the entry files programs start from."""

from __future__ import annotations

from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # src/streamml/paths.py -> the checkout


def repo_root() -> Path:
    """The checkout streamml runs from: the one holding this source tree (an editable install, as in the local stack
    and the Compose images), else the working directory."""
    return _SOURCE_ROOT if (_SOURCE_ROOT / "pyproject.toml").is_file() else Path.cwd().resolve()


BUILD_FEATURES_SCRIPT = Path("spark-jobs") / "build_features.py"  # relative to the root
DASHBOARD_ENTRY = Path("services") / "dashboard" / "app.py"
DAGS_DIR = Path("airflow") / "dags"
