"""The lifelong location is built from settings: partitions and run config come from a settings object (the
file ``configs/lifelong.yaml`` when Dagster loads it), never from the environment at import, and every module
of ``pipelines/lifelong`` imports on its own (no import cycle)."""

import subprocess
import sys
from datetime import date

import dagster as dg
import pytest

from pipelines.lifelong import definitions
from pipelines.lifelong.definitions import build_definitions
from pipelines.lifelong.settings import DEFAULT_SETTINGS_FILE, SETTINGS_ENV, LifelongSettings, load_settings
from pipelines.paths import PROJECT_DIR


def partitions_of(defs: dg.Definitions, asset: str) -> dg.PartitionsDefinition:
    return defs.resolve_assets_def(asset).partitions_def


def test_partitions_come_from_the_settings_the_definitions_are_built_with():
    daily = build_definitions(LifelongSettings())
    weekly = build_definitions(LifelongSettings(first_day=date(2023, 3, 5), walk_forward_window="week"))
    assert partitions_of(daily, "daily_events").get_first_partition_key() == "2022-01-01"
    assert partitions_of(daily, "walk_forward") == partitions_of(daily, "daily_events")
    assert partitions_of(weekly, "daily_events").get_first_partition_key() == "2023-03-05"
    assert isinstance(partitions_of(weekly, "walk_forward"), dg.WeeklyPartitionsDefinition)
    assert partitions_of(weekly, "walk_forward").get_partition_keys()[:2] == ["2023-03-05", "2023-03-12"]


def test_the_location_keeps_its_assets_jobs_sensors_and_schedule():
    defs = build_definitions(LifelongSettings())
    assert {key.to_user_string() for key in defs.resolve_all_asset_keys()} == {"daily_events", "walk_forward"}
    assert {job.name for job in defs.jobs} == {"daily_ingest", "walk_forward_refresh"}
    assert {sensor.name for sensor in defs.sensors} == {"lifelong_landing_sensor", "walk_forward_after_ingest"}
    assert [schedule.name for schedule in defs.schedules] == ["lifelong_daily"]


def test_the_settings_file_holds_the_defaults():
    assert LifelongSettings.from_file(DEFAULT_SETTINGS_FILE) == LifelongSettings()


def test_the_environment_may_name_another_settings_file(tmp_path, monkeypatch):
    path = tmp_path / "lifelong.yaml"
    path.write_text("walk_forward_window: week\nops:\n  walk_forward:\n    config:\n      models: [gru4rec]\n")
    monkeypatch.setenv(SETTINGS_ENV, str(path))
    settings = load_settings()
    assert settings.walk_forward_window == "week"
    assert settings.run_config("walk_forward") == {"ops": {"walk_forward": {"config": {"models": ["gru4rec"]}}}}
    assert settings.run_config("daily_events") == {}


def test_importing_the_location_reads_no_settings_loading_it_does(tmp_path, monkeypatch):
    monkeypatch.setenv(SETTINGS_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match=f"missing.yaml does not exist \\(set {SETTINGS_ENV}"):
        definitions.defs()


def test_a_retired_partition_variable_fails_naming_the_setting_that_replaced_it(monkeypatch):
    monkeypatch.setenv("RECMAMBA_WALK_FORWARD_WINDOW", "week")
    with pytest.raises(ValueError, match=r"set 'walk_forward_window' in .*lifelong\.yaml"):
        load_settings()


def test_settings_refuse_an_unknown_key_naming_the_file(tmp_path):
    path = tmp_path / "lifelong.yaml"
    path.write_text("ops:\n  raw_events:\n    config: {}\n")
    with pytest.raises(ValueError, match=r"lifelong\.yaml: ops: .*unknown: \['raw_events'\]$"):
        LifelongSettings.from_file(path)


IMPORT_EACH_MODULE_FIRST = """
import importlib, pkgutil, sys
import pipelines.lifelong as package
names = sorted(f"pipelines.lifelong.{module.name}" for module in pkgutil.iter_modules(package.__path__))
for name in names:
    for loaded in [m for m in sys.modules if m == "pipelines" or m.startswith("pipelines.")]:
        del sys.modules[loaded]
    importlib.import_module(name)
print(" ".join(names))
"""


def test_every_module_imports_first_on_its_own():
    """A cycle fails only when one of its modules is imported first, so each is, in a fresh package."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH_MODULE_FIRST], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pipelines.lifelong.definitions" in done.stdout.split()
