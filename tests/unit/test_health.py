from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streamml.config import Settings
from streamml.errors import StreamMLError
from streamml.runtime import health


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dead_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.chdir(tmp_path)
    port = closed_port()
    for section in ("KAFKA", "REDIS", "MINIO", "MLFLOW", "AIRFLOW"):
        monkeypatch.setenv(f"STREAMML_{section}__PORT", str(port))
    return Settings()


@pytest.mark.parametrize("service", ["redis", "minio", "mlflow", "airflow"])
def test_a_closed_port_is_reported_down_with_a_reason(dead_settings: Settings, service: str) -> None:
    result = health.check(service, dead_settings, timeout=1.0)
    assert not result.ok
    assert result.detail


def test_wait_for_names_what_is_still_down(dead_settings: Settings) -> None:
    waits: list[list[str]] = []
    with pytest.raises(StreamMLError, match=r"still down after .*redis"):
        health.wait_for(
            ["redis"], dead_settings, timeout=1.5, on_wait=lambda d, _: waits.append([h.service for h in d])
        )
    assert waits and waits[0] == ["redis"]


def test_wait_for_rejects_unknown_services(dead_settings: Settings) -> None:
    with pytest.raises(StreamMLError, match="unknown service"):
        health.wait_for(["postgres"], dead_settings, timeout=1)
