"""Where things are on disk: the checkout (its root and the entry files programs start from) and the state and
cache directories of the local stack."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from streamml.config import Settings

_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # src/streamml/paths.py -> the checkout


def repo_root() -> Path:
    """The checkout streamml runs from: the one holding this source tree (an editable install, as in the local stack
    and the Compose images), else the working directory."""
    return _SOURCE_ROOT if (_SOURCE_ROOT / "pyproject.toml").is_file() else Path.cwd().resolve()


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable only by its owner (0600 from creation, never briefly wider), creating its
    directory 0700: the generated config that holds secrets."""
    make_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        out.write(text)


def make_private_dir(path: Path) -> None:
    """``mkdir -p`` with 0700 for every directory it creates, and 0700 for ``path`` itself."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


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
