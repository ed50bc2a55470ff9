"""What a newcomer sees when the first run goes wrong: the cause and the fix, within seconds, where they look."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from streamml import tasks
from streamml.airflow_client import error_from_log
from streamml.cli import app
from streamml.config import get_settings
from streamml.data.ingest import download_movielens
from streamml.errors import ConfigError, DataValidationError, TransientError

RUN_SH = Path(__file__).resolve().parents[2] / "run.sh"


def test_the_task_log_gives_the_raised_error_and_the_cause_behind_airflows_fail_exception() -> None:
    raised = [
        {"event": "starting", "level": "info"},
        {
            "event": "Task failed with exception",
            "level": "error",
            "error_detail": [
                {"exc_type": "AirflowFailException", "exc_value": "ConfigError: could not download; set X"},
                {"exc_type": "ConfigError", "exc_value": "could not download; set X", "is_cause": True},
            ],
        },
    ]
    assert error_from_log(raised) == "ConfigError: could not download; set X"
    plain = [{"event": "Task failed with exception", "error_detail": [{"exc_type": "KeyError", "exc_value": "'x'"}]}]
    assert error_from_log(plain) == "KeyError: 'x'"
    assert error_from_log([{"event": "disk full", "level": "error"}, {"event": "bye", "level": "info"}]) == "disk full"
    assert "open the log in the Airflow UI" in error_from_log([{"event": "fine", "level": "info"}])


class _Param(BaseModel):
    quantile: float


@pytest.mark.parametrize(
    "error",
    [ConfigError("no data set; set STREAMML_MOVIELENS_DIR"), DataValidationError("ratings.csv: row 3: bad rating")],
)
def test_errors_retrying_cannot_fix_fail_the_task_at_once(error: Exception) -> None:
    with (
        pytest.raises(AirflowFailException, match=re.escape(f"{type(error).__name__}: {error}")),
        tasks.fail_without_retry(),
    ):
        raise error


def test_a_bad_run_param_fails_at_once_and_infrastructure_faults_are_left_to_the_retries() -> None:
    with pytest.raises(AirflowFailException, match="ValidationError"), tasks.fail_without_retry():
        _Param.model_validate({"quantile": "high"})
    with pytest.raises(TransientError), tasks.fail_without_retry():
        raise TransientError("Redis is unreachable")
    with pytest.raises(ValidationError):  # outside a task nothing changes
        _Param.model_validate({"quantile": "high"})


def test_offline_the_download_fails_in_seconds_naming_the_variable_that_avoids_it(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(ConfigError, match="set STREAMML_MOVIELENS_DIR to a local MovieLens directory"):
        download_movielens(tmp_path, url="http://127.0.0.1:9/ml-latest-small.zip")  # nothing listens on port 9
    assert time.monotonic() - start < 15
    assert not list((tmp_path / "movielens").glob("*.zip")), "no partial archive is left behind"


def test_data_resolve_names_a_wrong_directory_and_validates_a_right_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("STREAMML_MOVIELENS_DIR", str(tmp_path / "nope"))
    result = CliRunner().invoke(app, ["data", "resolve"])
    assert (
        result.exit_code == 1 and "STREAMML_MOVIELENS_DIR=" in result.output and "is not a directory" in result.output
    )
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("STREAMML_MOVIELENS_DIR", str(tmp_path / "empty"))
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["data", "resolve"])
    assert result.exit_code == 1 and "ratings.csv: file not found" in result.output
    get_settings.cache_clear()


def test_deploy_resolves_the_data_set_before_it_starts_anything() -> None:
    deploy = re.search(r"^cmd_deploy\(\) \{.*?^\}$", RUN_SH.read_text(), re.M | re.S).group(0)  # type: ignore[union-attr]
    assert deploy.index("streamml data resolve") < deploy.index("streamml stack up")


def test_verify_before_any_champion_says_so_and_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamml.config import Settings
    from streamml.verification import streaming

    class OneVersion:
        def __init__(self, _client: object) -> None:
            pass

        def current_version(self) -> int:
            return 1

    monkeypatch.setattr(streaming, "RedisFeatureStore", OneVersion)
    monkeypatch.setattr("streamml.models.registry.champion_version", lambda _settings: None)
    [check] = streaming.run(Settings(), n=5, timeout=1)
    assert not check.ok and check.name == "a model to score with"
    assert "no @champion of movielens-like yet" in check.detail
    assert "streamml pipelines trigger movielens_training --wait" in check.detail


def test_a_failed_tries_error_is_read_from_its_log_once_however_often_the_runs_are_polled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streamml.airflow_client import AirflowClient
    from streamml.config import Settings

    reads: list[str] = []

    def answer(self: AirflowClient, method: str, path: str, **kwargs: object) -> object:
        reads.append(path)
        return {"content": [{"event": "boom", "error_detail": [{"exc_type": "KeyError", "exc_value": "'x'"}]}]}

    monkeypatch.setattr(AirflowClient, "_request", answer)
    client = AirflowClient(Settings().airflow)
    tasks = [
        {"task_id": "ingest", "state": "failed", "try_number": 1},
        {"task_id": "validate", "state": "upstream_failed"},
    ]
    for _ in range(3):  # the dashboard polls the API's run list every few seconds
        [failure] = client.failures("movielens_training", "manual__1", tasks)
        assert (failure.task_id, failure.try_number, failure.error) == ("ingest", 1, "KeyError: 'x'")
    assert len(reads) == 1 and reads[0].endswith("/taskInstances/ingest/logs/1")
    client.close()
