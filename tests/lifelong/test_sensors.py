"""The lifelong location's sensors and schedule: which days they ingest and when they walk the next window."""

from __future__ import annotations

import dagster as dg

from pipelines.paths import ProjectPaths
from pipelines.refresh.sensors import SETTLE_SECONDS_ENV


def ingest_days(instance: dg.DagsterInstance, days: list[str]) -> None:
    from pipelines.data.resources import Warehouse
    from pipelines.lifelong.daily_events import daily_events

    for day in days:
        dg.materialize([daily_events], partition_key=day, resources={"warehouse": Warehouse()}, instance=instance)


def lifelong_tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    from pipelines.lifelong.sensors import lifelong_landing_sensor

    return lifelong_landing_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))


def requested(result) -> list[tuple[str, str]]:
    return [(request.job_name, request.partition_key) for request in result.run_requests]


def test_lifelong_sensor_requests_exactly_the_new_and_changed_days(project_home, monkeypatch):
    from pipelines.data.sources import drift
    from pipelines.lifelong.daily_ingest import DRIFT_FOLDER
    from pipelines.lifelong.sensors import INGEST_JOB

    monkeypatch.setenv(SETTLE_SECONDS_ENV, "0")
    spec, folder = drift.SCALES["tiny"], ProjectPaths.from_env().landing / DRIFT_FOLDER
    events = drift.generate(spec)
    days = [drift.day_key(day) for day in range(spec.days)]
    drift.land_days(events, folder, "kuairand", range(3))
    with dg.instance_for_test() as instance:
        first = lifelong_tick(instance, None)
        assert requested(first) == [(INGEST_JOB, day) for day in days[:3]]
        ingest_days(instance, days[:3])
        assert requested(lifelong_tick(instance, first.cursor)) == []  # nothing new

        drift.land_days(events, folder, "kuairand", range(3, 4))
        late = folder / "log_synthetic_20220102_late.csv"
        late.write_text((folder / "log_synthetic_20220102.csv").read_text())
        second = lifelong_tick(instance, first.cursor)
        assert requested(second) == [(INGEST_JOB, days[1]), (INGEST_JOB, days[3])]


def test_each_ingest_or_walked_window_requests_the_next_window_once_its_days_are_in(project_home):
    from pipelines.data.resources import Warehouse
    from pipelines.data.sources import drift
    from pipelines.lifelong.daily_ingest import DRIFT_FOLDER
    from pipelines.lifelong.definitions import defs
    from pipelines.lifelong.sensors import INGEST_JOB, WALK_FORWARD_JOB, WALK_FORWARD_KEY, walk_forward_after_ingest

    spec = drift.SCALES["tiny"]
    days = [drift.day_key(day) for day in range(spec.days)]
    drift.land_days(drift.generate(spec), ProjectPaths.from_env().landing / DRIFT_FOLDER, "kuairand", range(4))
    ingest_job = defs.resolve_job_def(INGEST_JOB)

    def after_ingest(day: str) -> list[tuple[str, str]]:
        done = ingest_job.execute_in_process(partition_key=day, instance=instance, resources={"warehouse": Warehouse()})
        context = dg.build_run_status_sensor_context(
            "walk_forward_after_ingest", done.get_run_success_event(), instance, done.dagster_run
        )
        return [(request.job_name, request.partition_key) for request in walk_forward_after_ingest(context)]

    with dg.instance_for_test() as instance:
        ingest_days(instance, days[:2])
        assert after_ingest(days[2]) == []  # no window walked yet: the user starts the first one
        instance.report_runless_asset_event(dg.AssetMaterialization("walk_forward", partition=days[2]))
        walking = instance.create_run_for_job(
            defs.resolve_job_def(WALK_FORWARD_JOB),
            asset_selection=frozenset({WALK_FORWARD_KEY}),
            status=dg.DagsterRunStatus.STARTED,
        )
        assert after_ingest(days[3]) == []  # a window is still being walked: one at a time
        instance.report_run_canceled(walking)
        assert after_ingest(days[3]) == [(WALK_FORWARD_JOB, days[3])]


def test_lifelong_schedule_requests_the_landed_days_without_a_partition(project_home):
    from pipelines.data.sources import drift
    from pipelines.lifelong.daily_ingest import DRIFT_FOLDER
    from pipelines.lifelong.sensors import lifelong_daily

    spec = drift.SCALES["tiny"]
    drift.land_days(drift.generate(spec), ProjectPaths.from_env().landing / DRIFT_FOLDER, "kuairand", range(2))
    with dg.instance_for_test() as instance:
        ingest_days(instance, [drift.day_key(0)])
        requests = lifelong_daily(dg.build_schedule_context(instance=instance))
    assert [request.partition_key for request in requests] == [drift.day_key(1)]
