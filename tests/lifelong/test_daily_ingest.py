"""The day-partitioned ingest: days one by one equal one full ingest, partitions replace their rows, late
files land in their day, and a row off its file's day is refused naming file, line and column."""

import dagster as dg
import pytest

from pipelines.data.resources import Warehouse
from pipelines.data.sources import drift
from pipelines.data.sources.files import IngestError
from pipelines.lifelong.definitions import lifelong_assets
from pipelines.lifelong.partitions import day_of_file
from pipelines.lifelong.settings import LifelongSettings
from pipelines.serving.landing import LandingReport, land_events
from tests.data.conftest import table

SPEC = drift.SCALES["tiny"]
DAYS = [drift.day_key(day) for day in range(SPEC.days)]
daily_events, _ = lifelong_assets(LifelongSettings().partitions())
TABLES = [
    "SELECT user_id, item_id, ts, row_id, day FROM daily_events ORDER BY row_id",
    "SELECT * FROM daily_user_map ORDER BY user_id",
    "SELECT * FROM daily_item_map ORDER BY item_id",
    "SELECT * FROM daily_sequences ORDER BY user_id",
]


def land(paths, days=range(SPEC.days), dataset_folder=drift.DRIFT_FOLDER):
    return drift.land_days(drift.generate(SPEC), paths.landing / dataset_folder, "kuairand", days)


def ingest(first: str, last: str | None = None, dataset: str = "lifelong"):
    """One run over the days first..last (a single-run backfill when they differ)."""
    tags = (
        {}
        if last is None
        else {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    )
    with dg.DagsterInstance.get() as instance:
        return dg.materialize(
            [daily_events],
            partition_key=first if last is None else None,
            tags=tags,
            resources={"warehouse": Warehouse()},
            run_config={"ops": {"daily_events": {"config": {"dataset": dataset}}}},
            instance=instance,
        )


def snapshot(paths, dataset):
    return [table(paths, query, dataset=dataset) for query in TABLES]


def test_days_one_by_one_give_the_tables_of_one_full_ingest(paths):
    land(paths)
    ingest(DAYS[0], DAYS[-1], dataset="full")
    for day in DAYS:
        ingest(day, dataset="daily")
    full, daily = snapshot(paths, "full"), snapshot(paths, "daily")
    assert full == daily
    assert len(full[0]) == drift.generate(SPEC).num_rows
    assert [row[0] for row in full[1]] == list(range(1, len(full[1]) + 1))


def test_existing_users_and_items_keep_their_ids_when_new_days_arrive(paths):
    land(paths, range(2))
    ingest(DAYS[0], DAYS[1])
    users, items = table(paths, TABLES[1]), table(paths, TABLES[2])
    land(paths, range(2, 4))
    ingest(DAYS[2], DAYS[3])
    assert table(paths, TABLES[1])[: len(users)] == users
    assert table(paths, TABLES[2])[: len(items)] == items


def test_a_rematerialized_day_replaces_its_rows_and_a_late_file_lands_in_its_day(paths):
    land(paths, range(3))
    ingest(DAYS[0], DAYS[2])
    before = snapshot(paths, "lifelong")
    ingest(DAYS[1])
    assert snapshot(paths, "lifelong") == before  # no duplicates, same ids

    late = paths.landing / drift.DRIFT_FOLDER / f"log_synthetic_{DAYS[1].replace('-', '')}_late.csv"
    header = land(paths, range(1, 2))[0].read_text().splitlines(keepends=True)[0]
    start = 1_641_081_600_000  # 2022-01-02 00:00 UTC
    late.write_text(header + f"999,7,20220102,0,{start + 5_000},1,0,0,0,0,0,1,10,20,0,0,0,0,1\n")
    ingest(DAYS[1])
    per_day = dict(table(paths, "SELECT day::VARCHAR, count(*) FROM daily_events GROUP BY day"))
    assert per_day[DAYS[1]] == sum(1 for row in before[0] if str(row[4]) == DAYS[1]) + 1
    assert table(paths, "SELECT count(*) FROM daily_user_map WHERE user_raw = '999'") == [(1,)]


def test_a_row_off_its_files_day_is_refused_naming_file_line_and_column(paths):
    [path] = land(paths, range(1))
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[3].split(",")
    fields[4] = str(int(fields[4]) + 2 * 86_400_000)
    lines[3] = ",".join(fields)
    path.write_text("".join(lines))
    with pytest.raises(IngestError) as failure:
        ingest(DAYS[0])
    message = str(failure.value)
    assert "\n" not in message
    assert f"{path.name}: line 4: column 'time_ms'" in message
    assert "not on the file's day 2022-01-01" in message


def test_a_day_without_files_is_an_error_naming_the_folder(paths):
    land(paths, range(1))
    with pytest.raises(IngestError, match="no landed file is named with a day in 2022-01-04"):
        ingest(DAYS[3])


@pytest.mark.parametrize(
    "name, day", [("log_20220105.csv", "2022-01-05"), ("x-2022-02-28.csv", "2022-02-28"), ("log.csv", None)]
)
def test_a_files_day_is_the_date_in_its_name(name, day, tmp_path):
    assert day_of_file(tmp_path / name) == day


def test_the_services_day_files_are_part_of_their_days(paths):
    land(paths, range(1))
    folder = paths.served_events("lifelong")
    start = 1_641_081_600_000  # 2022-01-02 00:00 UTC: a day with no source file
    land_events([("999", "7", start + 5_000), ("998", "8", start + 6_000)], folder, LandingReport())
    land_events([("999", "7", start + 5_000)], folder, LandingReport())  # landed twice: still one event
    ingest(DAYS[0], DAYS[1])
    rows = table(paths, "SELECT day::VARCHAR, count(*) FROM daily_events GROUP BY day ORDER BY day")
    assert rows[1] == (DAYS[1], 2)
    assert table(paths, "SELECT count(*) FROM daily_user_map WHERE user_raw IN ('998', '999')") == [(2,)]
