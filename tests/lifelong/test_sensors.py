"""The lifelong location's sensors and schedule: which days they ingest and when they walk the next window."""

from __future__ import annotations

import dataclasses
from datetime import date

import dagster as dg

from pipelines.data.resources import Warehouse
from pipelines.data.sources import drift
from pipelines.lifelong.definitions import build_definitions
from pipelines.lifelong.jobs import INGEST_JOB, WALK_FORWARD_JOB
from pipelines.lifelong.sensors import WALK_FORWARD_KEY
from pipelines.lifelong.settings import LifelongSettings
from pipelines.paths import ProjectPaths
from pipelines.refresh.sensors import SETTLE_SECONDS_ENV

SPEC = drift.SCALES["tiny"]
DAYS = [drift.day_key(day) for day in range(SPEC.days)]
DEFS = build_definitions(LifelongSettings())  # days from the stream's first day, day windows


def land(days: range) -> None:
    drift.land_days(drift.generate(SPEC), ProjectPaths.from_env().landing / drift.DRIFT_FOLDER, "kuairand", days)


def ingest_days(instance: dg.DagsterInstance, days: list[str], defs: dg.Definitions = DEFS) -> None:
    job = defs.resolve_job_def(INGEST_JOB)
    for day in days:
        job.execute_in_process(partition_key=day, instance=instance, resources={"warehouse": Warehouse()})


def lifelong_tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    sensor = DEFS.resolve_sensor_def("lifelong_landing_sensor")
    return sensor(dg.build_sensor_context(instance=instance, cursor=cursor))


def requested(result) -> list[tuple[str, str]]:
    return [(request.job_name, request.partition_key) for request in result.run_requests]


def test_lifelong_sensor_requests_exactly_the_new_and_changed_days(project_home, monkeypatch):
    monkeypatch.setenv(SETTLE_SECONDS_ENV, "0")
    folder = ProjectPaths.from_env().landing / drift.DRIFT_FOLDER
    events = drift.generate(SPEC)
    drift.land_days(events, folder, "kuairand", range(3))
    with dg.instance_for_test() as instance:
        first = lifelong_tick(instance, None)
        assert requested(first) == [(INGEST_JOB, day) for day in DAYS[:3]]
        ingest_days(instance, DAYS[:3])
        assert requested(lifelong_tick(instance, first.cursor)) == []  # nothing new

        drift.land_days(events, folder, "kuairand", range(3, 4))
        late = folder / "log_synthetic_20220102_late.csv"
        late.write_text((folder / "log_synthetic_20220102.csv").read_text())
        second = lifelong_tick(instance, first.cursor)
        assert requested(second) == [(INGEST_JOB, DAYS[1]), (INGEST_JOB, DAYS[3])]


def after_ingest(instance: dg.DagsterInstance, day: str, defs: dg.Definitions = DEFS) -> list[tuple[str, str]]:
    """Ingest ``day``, then what the run-status sensor requests on that run's success."""
    done = defs.resolve_job_def(INGEST_JOB).execute_in_process(
        partition_key=day, instance=instance, resources={"warehouse": Warehouse()}
    )
    context = dg.build_run_status_sensor_context(
        "walk_forward_after_ingest", done.get_run_success_event(), instance, done.dagster_run
    )
    sensor = defs.resolve_sensor_def("walk_forward_after_ingest")
    return [(request.job_name, request.partition_key) for request in sensor(context)]


def test_each_ingest_or_walked_window_requests_the_next_window_once_its_days_are_in(project_home):
    land(range(4))
    with dg.instance_for_test() as instance:
        ingest_days(instance, DAYS[:2])
        assert after_ingest(instance, DAYS[2]) == []  # no window walked yet: the user starts the first one
        instance.report_runless_asset_event(dg.AssetMaterialization("walk_forward", partition=DAYS[2]))
        walking = instance.create_run_for_job(
            DEFS.resolve_job_def(WALK_FORWARD_JOB),
            asset_selection=frozenset({WALK_FORWARD_KEY}),
            status=dg.DagsterRunStatus.STARTED,
        )
        assert after_ingest(instance, DAYS[3]) == []  # a window is still being walked: one at a time
        instance.report_run_canceled(walking)
        assert after_ingest(instance, DAYS[3]) == [(WALK_FORWARD_JOB, DAYS[3])]


def test_a_week_window_is_requested_once_all_seven_of_its_days_are_in(project_home):
    """Weekly windows from the settings alone (no environment variable); Dagster's weeks start on Sunday."""
    weekly = build_definitions(LifelongSettings(first_day=date(2021, 12, 26), walk_forward_window="week"))
    spec = dataclasses.replace(SPEC, days=8)
    days = [drift.day_key(day) for day in range(spec.days)]  # 2022-01-01 (a Saturday) .. 2022-01-08
    drift.land_days(drift.generate(spec), ProjectPaths.from_env().landing / drift.DRIFT_FOLDER, "kuairand", range(8))
    with dg.instance_for_test() as instance:
        ingest_days(instance, days[:6], weekly)
        instance.report_runless_asset_event(dg.AssetMaterialization("walk_forward", partition="2021-12-26"))
        assert after_ingest(instance, days[6], weekly) == []  # the week of 2022-01-02 still lacks its Saturday
        assert after_ingest(instance, days[7], weekly) == [(WALK_FORWARD_JOB, "2022-01-02")]


def test_lifelong_schedule_requests_the_landed_days_without_a_partition(project_home):
    land(range(2))
    with dg.instance_for_test() as instance:
        ingest_days(instance, [DAYS[0]])
        requests = DEFS.resolve_schedule_def("lifelong_daily")(dg.build_schedule_context(instance=instance))
    assert [request.partition_key for request in requests] == [DAYS[1]]


def test_the_runs_a_sensor_requests_take_the_run_config_of_the_settings(project_home, monkeypatch):
    monkeypatch.setenv(SETTLE_SECONDS_ENV, "0")
    ops = {"daily_events": {"config": {"dataset": "mine"}}}
    sensor = build_definitions(LifelongSettings(ops=ops)).resolve_sensor_def("lifelong_landing_sensor")
    land(range(1))
    with dg.instance_for_test() as instance:
        result = sensor(dg.build_sensor_context(instance=instance))
    assert [request.run_config for request in result.run_requests] == [{"ops": ops}]
