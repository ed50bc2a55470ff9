"""Where things are on disk: the checkout (its root and the entry files programs start from) and the state and
cache directories of the local stack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamml.config import Settings

_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # src/streamml/paths.py -> the checkout


def repo_root() -> Path:
    """The checkout streamml runs from: the one holding this source tree (an editable install, as in the local stack
    and the Compose images), else the working directory."""
    return _SOURCE_ROOT if (_SOURCE_ROOT / "pyproject.toml").is_file() else Path.cwd().resolve()


BUILD_FEATURES_SCRIPT = Path("spark-jobs") / "build_features.py"  # relative to the root
DASHBOARD_ENTRY = Path("services") / "dashboard" / "app.py"
DAGS_DIR = Path("airflow") / "dags"


@dataclass(frozen=True)
class StackPaths:
    """Where the local stack keeps its state, all absolute."""

    root: Path
    state: Path
    cache: Path

    @classmethod
    def from_settings(cls, settings: Settings, root: Path | None = None) -> StackPaths:
        root = (root or repo_root()).resolve()
        state = settings.state_dir if settings.state_dir.is_absolute() else root / settings.state_dir
        return cls(root=root, state=state, cache=settings.cache_dir.expanduser().resolve())

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def supervisor_conf(self) -> Path:
        return self.state / "supervisor" / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.state / "supervisor" / "supervisor.sock"

    @property
    def supervisor_pidfile(self) -> Path:
        return self.state / "supervisor" / "supervisord.pid"

    @property
    def kafka_libs(self) -> Path:
        return self.cache / "kafka" / "libs"

    @property
    def spark_jars(self) -> Path:
        return self.cache / "spark" / "jars"

    @property
    def minio_binary(self) -> Path:
        return self.cache / "bin" / "minio"

    @property
    def airflow_home(self) -> Path:
        return self.state / "airflow"
