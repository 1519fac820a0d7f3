"""Scheduled and sensor-started refreshes: when they fire and with which run config."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from pipelines.paths import ProjectPaths
from pipelines.refresh.jobs import REFRESH_CONFIG_ENV
from pipelines.refresh.schedules import daily_refresh
from pipelines.refresh.sensors import landing_files_sensor


@pytest.fixture
def refresh_config(project_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = project_home / "refresh.yaml"
    path.write_text("ops:\n  raw_events:\n    config:\n      source: kuairand\n")
    monkeypatch.setenv(REFRESH_CONFIG_ENV, str(path))
    return path


def evaluate_sensor(cursor: str | None = None) -> dg.SensorResult | dg.SkipReason:
    with dg.instance_for_test() as instance:
        return landing_files_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))


def test_sensor_skips_an_empty_landing_folder(refresh_config):
    assert isinstance(evaluate_sensor(), dg.SkipReason)


def test_sensor_ignores_files_the_synthetic_generator_writes(refresh_config):
    generated = ProjectPaths.from_env().landing / "synthetic"
    generated.mkdir(parents=True)
    (generated / "day_0.csv").write_text("user_id,video_id\n")
    assert isinstance(evaluate_sensor(), dg.SkipReason)


def test_sensor_starts_one_refresh_per_new_set_of_files(refresh_config):
    landing = ProjectPaths.from_env().landing / "kuairand"
    landing.mkdir(parents=True)
    (landing / "2022-05-01.csv").write_text("user_id,video_id\n")

    first = evaluate_sensor()
    assert isinstance(first, dg.SensorResult)
    [request] = first.run_requests
    assert request.run_config == {"ops": {"raw_events": {"config": {"source": "kuairand"}}}}
    assert isinstance(evaluate_sensor(cursor=first.cursor), dg.SkipReason)

    (landing / "2022-05-02.csv").write_text("user_id,video_id\n")
    second = evaluate_sensor(cursor=first.cursor)
    assert isinstance(second, dg.SensorResult)
    assert second.run_requests[0].run_key != request.run_key


def test_daily_schedule_is_off_by_default_and_uses_the_refresh_config(refresh_config):
    assert daily_refresh.default_status == dg.DefaultScheduleStatus.STOPPED
    with dg.instance_for_test() as instance:
        request = daily_refresh(dg.build_schedule_context(instance=instance))
    assert request.run_config["ops"]["raw_events"]["config"]["source"] == "kuairand"


def test_refresh_without_its_config_file_says_which_file_is_missing(project_home, monkeypatch):
    monkeypatch.setenv(REFRESH_CONFIG_ENV, str(project_home / "missing.yaml"))
    landing = ProjectPaths.from_env().landing / "kuairand"
    landing.mkdir(parents=True)
    (landing / "a.csv").write_text("x\n")
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        evaluate_sensor()
