from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from streamml.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def env_names(model: type[BaseModel], prefix: str = "STREAMML_") -> set[str]:
    found = set()
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            found |= env_names(ann, f"{prefix}{name.upper()}__")
        else:
            found.add(f"{prefix}{name.upper()}")
    return found


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """run.sh exports .env; these tests start from an environment without STREAMML_ variables."""
    for var in [v for v in os.environ if v.startswith("STREAMML_")]:
        monkeypatch.delenv(var)


def test_defaults_are_loopback_local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    s = Settings()
    assert s.mode == "local"
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.redis.url == "redis://127.0.0.1:6379/0"
    assert s.minio.endpoint_url == "http://127.0.0.1:9000"
    assert s.mlflow.tracking_uri == "http://127.0.0.1:5000"


def test_nested_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMML_KAFKA__PORT", "19092")
    monkeypatch.setenv("STREAMML_MINIO__SECRET_KEY", "s3cret-value")
    s = Settings()
    assert s.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert s.minio.secret_key.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(s)


def test_env_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("STREAMML_REDIS__PORT=16379\n")
    assert Settings().redis.port == 16379


def test_default_secrets_refused_outside_local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMML_MODE", "docker")
    with pytest.raises(ValidationError, match="STREAMML_MINIO__SECRET_KEY"):
        Settings()


def test_real_secrets_accepted_outside_local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMML_MODE", "docker")
    for var in ("MINIO__SECRET_KEY", "AIRFLOW__ADMIN_PASSWORD", "AIRFLOW__JWT_SECRET", "API__API_KEY"):
        monkeypatch.setenv(f"STREAMML_{var}", f"real-{var.lower()}-value")
    assert Settings().mode == "docker"


def test_bad_value_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMML_KAFKA__PARTITIONS", "0")
    with pytest.raises(ValidationError, match="partitions"):
        Settings()


def test_every_field_has_a_description() -> None:
    def walk(model: type[BaseModel]) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{model.__name__}.{name}")
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                missing += walk(field.annotation)
        return missing

    assert walk(Settings) == []


def test_env_example_lists_every_variable_and_nothing_else() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*(STREAMML_[A-Z0-9_]+)=", text, flags=re.M))
    assert listed == env_names(Settings)
