"""The service's day files in the full ingest: appended after the source's rows, and an id the source's type
cannot hold refused naming file, line and column, with the earlier tables kept."""

from pipelines.serving.landing import LandingReport, land_events
from tests.data.conftest import TINY, materialize, table

DAY_MS = 86_400_000


def test_served_events_follow_the_sources_rows_in_raw_events(paths):
    materialize(TINY, selection="raw_events")
    (rows, last_row, newest), *_ = table(paths, "SELECT count(*), max(row_id), max(ts) FROM raw_events")
    land_events([("7", "12", newest + 1), ("7", "12", newest + 1), ("8", "9", newest - DAY_MS)],
                paths.served_events("synthetic"), LandingReport())  # fmt: skip
    result = materialize(TINY, selection="raw_events")
    metadata = result.asset_materializations_for_node("raw_events")[0].metadata
    assert (metadata["row_count"].value, metadata["served_events"].value) == (rows + 2, 2)
    served = table(paths, f"SELECT user_raw, item_raw, ts FROM raw_events WHERE row_id > {last_row} ORDER BY row_id")
    assert served == [(8, 9, newest - DAY_MS), (7, 12, newest + 1)]  # the sources' integer ids, by file then line


def test_a_text_user_in_an_integer_dataset_is_refused_naming_file_line_and_column(paths):
    materialize(TINY, selection="raw_events")
    (newest,) = table(paths, "SELECT max(ts) FROM raw_events")[0]
    folder = paths.served_events("synthetic")
    land_events([("7", "12", newest), ("ann", "12", newest + 1)], folder, LandingReport())
    result = materialize(TINY, selection="raw_events", raise_on_error=False)
    assert not result.success
    [path] = folder.glob("served_events_*.csv")
    assert f"{path}: line 3: column 'user': 'ann' is not an integer" in str(result.all_events)
    assert table(paths, "SELECT count(*) FROM raw_events WHERE source_file LIKE '%served%'") == [(0,)]
