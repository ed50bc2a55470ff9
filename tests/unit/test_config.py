from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from tests.unit.conftest import TEST_SECRETS

from streamml.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def env_names(model: type[BaseModel], prefix: str = "STREAMML_") -> set[str]:
    found = set()
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            found |= env_names(ann, f"{prefix}{name.upper()}__")
        elif name.startswith("program_"):  # a dict by program account
            found |= {f"{prefix}{name.upper()}__{a.upper()}" for a in model.ACCOUNTS}  # type: ignore[attr-defined]
        else:
            found.add(f"{prefix}{name.upper()}")
    return found


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """run.sh exports .env; these tests start from an environment without STREAMML_ variables but the secrets."""
    for var in [v for v in os.environ if v.startswith("STREAMML_")]:
        monkeypatch.delenv(var)
    for var, value in TEST_SECRETS.items():
        monkeypatch.setenv(var, value)


def test_defaults_are_loopback_local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    s = Settings()
    assert s.mode == "local"
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.redis.address == "redis://default@127.0.0.1:6379/0"
    assert s.redis.url == f"redis://default:{TEST_SECRETS['STREAMML_REDIS__PASSWORD']}@127.0.0.1:6379/0"
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


@pytest.mark.parametrize("mode", ["local", "docker"])
def test_the_published_default_secrets_are_refused_in_every_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMML_MODE", mode)
    monkeypatch.setenv("STREAMML_REDIS__PASSWORD", "change-me-redis")  # .env.example's
    monkeypatch.setenv("STREAMML_API__API_KEY", "change-me-api-key")
    with pytest.raises(ValidationError, match="STREAMML_API__API_KEY, STREAMML_REDIS__PASSWORD") as refused:
        Settings()
    assert "run.sh setup generates random secrets into .env" in str(refused.value)


def test_real_secrets_accepted_in_docker_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMML_MODE", "docker")
    assert Settings().mode == "docker"


def _run_setup_env(tmp_path: Path, env_text: str | None = None) -> str:
    """run.sh's .env step in ``tmp_path`` (a copy of run.sh and .env.example; the rest of run.sh is not run)."""
    import subprocess

    script = (ROOT / "run.sh").read_text()
    step = script[script.index("generate_secrets() {") : script.index("chmod 600 .env") + len("chmod 600 .env")]
    (tmp_path / ".env.example").write_text((ROOT / ".env.example").read_text())
    if env_text is not None:
        (tmp_path / ".env").write_text(env_text)
    done = subprocess.run(["bash", "-c", step], cwd=tmp_path, capture_output=True, text=True, check=True)  # noqa: S603, S607
    return done.stdout


def test_setup_writes_a_private_env_with_random_secrets(tmp_path: Path) -> None:
    said = _run_setup_env(tmp_path)
    env = tmp_path / ".env"
    assert "generated secrets" in said
    assert env.stat().st_mode & 0o777 == 0o600
    text = env.read_text()
    assert "=change-me" not in text
    values = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    secrets = {name: values[name] for name in TEST_SECRETS}
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in secrets.values()), secrets
    assert len(set(secrets.values())) == len(secrets)
    other = tmp_path / "again"
    other.mkdir()
    _run_setup_env(other)
    assert not set(secrets.values()) & set((other / ".env").read_text().split("=")), "each .env has its own"


def test_setup_replaces_change_me_left_in_an_existing_env(tmp_path: Path) -> None:
    said = _run_setup_env(tmp_path, "STREAMML_API__API_KEY=change-me-api-key\nSTREAMML_REDIS__PORT=16379\n")
    text = (tmp_path / ".env").read_text()
    assert set(said.split()[-len(TEST_SECRETS) - 1 :]) == {*TEST_SECRETS, "POSTGRES_PASSWORD"}, "left in .env, lacked"
    assert "change-me" not in text and "STREAMML_REDIS__PORT=16379" in text
    assert _run_setup_env(tmp_path) == "", "nothing left to generate"
    assert (tmp_path / ".env").read_text() == text
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "streamml.example.com"])  # noqa: S104 - refused here
def test_local_mode_refuses_a_non_loopback_bind_unless_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMML_REDIS__HOST", host)
    with pytest.raises(ValidationError, match=f"STREAMML_REDIS__HOST={host} is not loopback"):
        Settings()
    monkeypatch.setenv("STREAMML_ALLOW_REMOTE_BIND", "true")
    assert Settings().redis.host == host
    monkeypatch.setenv("STREAMML_REDIS__HOST", "::1")
    monkeypatch.delenv("STREAMML_ALLOW_REMOTE_BIND")
    assert Settings().redis.host == "::1"


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
