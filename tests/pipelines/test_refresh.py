"""Scheduled and sensor-started refreshes: when they fire and with which run config."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from pipelines.paths import ProjectPaths
from pipelines.refresh.jobs import REFRESH_CONFIG_ENV
from pipelines.refresh.schedules import daily_refresh
from pipelines.refresh.sensors import SETTLE_SECONDS_ENV, landing_files_sensor

SETTLED_AGE_SECONDS = 3600.0


@pytest.fixture
def refresh_config(project_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = project_home / "refresh.yaml"
    path.write_text("ops:\n  raw_events:\n    config:\n      source: kuairand\n")
    monkeypatch.setenv(REFRESH_CONFIG_ENV, str(path))
    return path


def evaluate_sensor(cursor: str | None = None) -> dg.SensorResult | dg.SkipReason:
    with dg.instance_for_test() as instance:
        return landing_files_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))


def land(relative: str, age_seconds: float = SETTLED_AGE_SECONDS) -> Path:
    """Write a file under the landing folder, last modified ``age_seconds`` ago."""
    path = ProjectPaths.from_env().landing / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("user_id,video_id\n")
    age(path, age_seconds)
    return path


def age(path: Path, seconds: float) -> None:
    modified = time.time() - seconds
    os.utime(path, (modified, modified))


def test_sensor_skips_an_empty_landing_folder(refresh_config):
    assert isinstance(evaluate_sensor(), dg.SkipReason)


def test_sensor_ignores_files_the_synthetic_generator_writes(refresh_config):
    land("synthetic/day_0.csv")
    assert isinstance(evaluate_sensor(), dg.SkipReason)


@pytest.mark.parametrize("name", [".2022-05-01.csv", "2022-05-01.csv.part", "2022-05-01.csv.tmp", ".staging/a.csv"])
def test_sensor_ignores_files_not_yet_published_by_rename(refresh_config, name):
    land(f"kuairand/{name}")
    skip = evaluate_sensor()
    assert isinstance(skip, dg.SkipReason)
    assert "no raw files" in skip.skip_message


def test_sensor_starts_one_refresh_per_new_set_of_files(refresh_config):
    land("kuairand/2022-05-01.csv")

    first = evaluate_sensor()
    assert isinstance(first, dg.SensorResult)
    [request] = first.run_requests
    assert request.run_config == {"ops": {"raw_events": {"config": {"source": "kuairand"}}}}
    assert isinstance(evaluate_sensor(cursor=first.cursor), dg.SkipReason)

    land("kuairand/2022-05-02.csv")
    second = evaluate_sensor(cursor=first.cursor)
    assert isinstance(second, dg.SensorResult)
    assert second.run_requests[0].run_key != request.run_key


def test_sensor_waits_until_every_landed_file_has_settled(refresh_config, monkeypatch):
    monkeypatch.setenv(SETTLE_SECONDS_ENV, "30")
    land("kuairand/2022-05-01.csv")
    first = evaluate_sensor()
    assert isinstance(first, dg.SensorResult)
    growing = land("kuairand/2022-05-02.csv", age_seconds=5)

    waiting = evaluate_sensor(cursor=first.cursor)
    assert isinstance(waiting, dg.SkipReason)  # a skip leaves the cursor where it was
    assert "2022-05-02.csv" in waiting.skip_message
    assert "settling" in waiting.skip_message

    age(growing, 31)
    settled = evaluate_sensor(cursor=first.cursor)
    assert isinstance(settled, dg.SensorResult)
    assert settled.cursor != first.cursor


def test_sensor_settle_time_defaults_to_30_seconds(refresh_config, monkeypatch):
    monkeypatch.delenv(SETTLE_SECONDS_ENV, raising=False)
    landed = land("kuairand/2022-05-01.csv", age_seconds=20)
    assert isinstance(evaluate_sensor(), dg.SkipReason)
    age(landed, 40)
    assert isinstance(evaluate_sensor(), dg.SensorResult)


def test_sensor_with_no_settle_time_starts_on_a_fresh_file(refresh_config, monkeypatch):
    monkeypatch.setenv(SETTLE_SECONDS_ENV, "0")
    land("kuairand/2022-05-01.csv", age_seconds=0)
    assert isinstance(evaluate_sensor(), dg.SensorResult)


def test_sensor_rejects_a_settle_time_that_is_not_seconds(refresh_config, monkeypatch):
    monkeypatch.setenv(SETTLE_SECONDS_ENV, "half a minute")
    land("kuairand/2022-05-01.csv")
    with pytest.raises(ValueError, match=rf"{SETTLE_SECONDS_ENV}.*'half a minute'"):
        evaluate_sensor()


def test_daily_schedule_is_off_by_default_and_uses_the_refresh_config(refresh_config):
    assert daily_refresh.default_status == dg.DefaultScheduleStatus.STOPPED
    with dg.instance_for_test() as instance:
        request = daily_refresh(dg.build_schedule_context(instance=instance))
    assert request.run_config["ops"]["raw_events"]["config"]["source"] == "kuairand"


def test_refresh_without_its_config_file_says_which_file_is_missing(project_home, monkeypatch):
    monkeypatch.setenv(REFRESH_CONFIG_ENV, str(project_home / "missing.yaml"))
    land("kuairand/a.csv")
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        evaluate_sensor()


def test_a_refresh_launched_from_the_ui_starts_from_the_schedules_config(project_home, monkeypatch):
    from pipelines.refresh.jobs import DEFAULT_REFRESH_CONFIG, refresh_job, refresh_run_config

    monkeypatch.setenv(REFRESH_CONFIG_ENV, str(DEFAULT_REFRESH_CONFIG))
    assert refresh_job.config == refresh_run_config()
