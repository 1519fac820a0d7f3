"""Staged rows name their file through an ENUM of the staged files, one small integer per row, not the path
string (which alone more than doubled the staging table and made a 109 M-event ingest spill); raw_events
still holds each row's path as text."""

import duckdb

from pipelines.data.sources import lfm1b
from pipelines.data.sql import run_sql


def test_staged_rows_name_their_file_by_an_enum_and_raw_events_by_text(tmp_path):
    files = []
    for day, rows in enumerate([[(1, 10, 100, 1000, 1_356_998_400)], [(2, 20, 200, 2000, 1_357_084_800)] * 2]):
        path = tmp_path / f"LFM-1b_LEs_{day}.txt"
        path.write_text("".join("\t".join(map(str, row)) + "\n" for row in rows))
        files.append(path)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    for _ in range(2):  # staging again remakes the type
        lfm1b.stage(con, files, "track")
    kinds = con.execute("SELECT DISTINCT typeof(filename) FROM raw_stage").fetchall()
    assert len(kinds) == 1 and kinds[0][0].startswith("ENUM(")
    run_sql(con, "raw_events", multiply=1000, divide=1)
    named = con.execute("SELECT typeof(source_file), source_file, count(*) FROM raw_events GROUP BY ALL ORDER BY 2")
    assert named.fetchall() == [("VARCHAR", str(files[0]), 1), ("VARCHAR", str(files[1]), 2)]
