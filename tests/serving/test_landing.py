"""Landing the journal as day files: idempotent, one row per distinct event, odd ids intact, nothing compacted
before it is landed, and events after tomorrow left out."""

from __future__ import annotations

import time

import duckdb

from pipelines.data.sources.served import append_served, served_files
from pipelines.data.sql import run_sql
from pipelines.serving.landing import LandingReport, day_file, land_events, land_served_store, read_day
from recmodels.serving.journal import JournalPolicy, compact_journal, landed_seq
from recmodels.serving.service import FUTURE_TOLERANCE_MS, RecommendationService
from tests.serving.conftest import item_raw

DAY = 1_700_000_000_000 // 86_400_000 * 86_400_000  # 2023-11-14 00:00 UTC


def test_landing_twice_writes_each_distinct_event_once_in_its_days_file(tmp_path):
    events = [("u1", "i1", DAY + 5), ("u2", "i2", DAY + 86_400_000), ("u1", "i1", DAY + 5)]
    land_events(events, tmp_path, LandingReport())
    first = day_file(tmp_path, "2023-11-14").read_bytes()
    report = LandingReport()
    land_events(events[:1], tmp_path, report)
    assert day_file(tmp_path, "2023-11-14").read_bytes() == first and report.days == {"2023-11-14"}
    assert read_day(day_file(tmp_path, "2023-11-15")) == {("u2", "i2", DAY + 86_400_000)}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".lock", "served_events_2023-11-14.csv", "served_events_2023-11-15.csv"
    ]  # fmt: skip


def test_ids_with_commas_quotes_and_spaces_reach_raw_events_intact(tmp_path):
    odd = [('a,"b"', "x y", DAY), ("ünï", "i;2 ", DAY + 1)]  # control characters: refused by the service
    land_events(odd, tmp_path, LandingReport())
    with duckdb.connect() as con:
        run_sql(con, "raw_events_empty")
        assert append_served(con, served_files(tmp_path), (0, DAY + 86_400_000)) == 2
        assert con.execute("SELECT user_raw, item_raw, ts FROM raw_events ORDER BY row_id").fetchall() == odd


def test_events_after_tomorrow_are_counted_and_not_landed(tmp_path):
    report = LandingReport()
    land_events([("u", "i", time.time_ns() // 1_000_000 + FUTURE_TOLERANCE_MS + 60_000)], tmp_path, report)
    assert (report.rows, report.future, list(tmp_path.glob("*.csv"))) == (0, 1, [])


def test_a_store_lands_what_it_applied_once_and_records_it(served_folder, tmp_path):
    folder = served_folder("gru4rec")
    service = RecommendationService(folder)
    service.post_events([("user-0", item_raw(3), 5_000), ("zoe", item_raw(4), 1_500)])
    compact_journal(service.store, JournalPolicy(max_age_days=1, max_rows=1))
    assert len(service.store.journal("zoe")) == 1  # not landed yet: kept whatever the policy
    assert land_served_store(folder, tmp_path / "landed").rows == 2
    assert land_served_store(folder, tmp_path / "landed").rows == 0  # recorded: nothing to land again
    assert landed_seq(service.store.meta()) == 2
    landed = read_day(day_file(tmp_path / "landed", "1970-01-01"))
    assert landed == {("user-0", item_raw(3), 5_000), ("zoe", item_raw(4), 1_500)}
    service.close()
