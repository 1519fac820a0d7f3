"""Bad raw input fails with one line naming file, line and column, and never damages earlier tables."""

import re
from pathlib import Path

import pytest

from pipelines.data.sources.files import IngestError
from pipelines.data.sources.kuairand import COLUMNS
from pipelines.paths import ProjectPaths
from tests.data.conftest import (
    KUAIRAND_SAMPLE,
    kuairand_config,
    kuairand_landing,
    materialize,
    table,
)

HEADER = ",".join(COLUMNS)
ROW = "7,5543,20220430,1800,1651314030792,1,0,0,0,0,0,1,863,30066,0,0,0,1,1"


def write_kuairand(paths: ProjectPaths, text: str | bytes, name: str = "day.csv") -> Path:
    folder = paths.landing / "kuairand"
    folder.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    (folder / name).write_bytes(data)
    return folder


def ingest_error(folder: Path, **raw: object) -> str:
    config = kuairand_config(folder)
    config["raw_events"]["config"].update(raw)
    with pytest.raises(IngestError) as failure:
        materialize(config, selection="raw_events")
    message = str(failure.value)
    assert "\n" not in message
    return message


def row(**changes: str) -> str:
    values = dict(zip(COLUMNS, ROW.split(","), strict=True)) | changes
    return ",".join(values[c] for c in COLUMNS)


@pytest.mark.parametrize(
    ("body", "line", "column"),
    [
        (f"{HEADER}\n{row(video_id='abc')}\n", 2, "video_id"),
        (f"{HEADER}\n{row()}\n{row(user_id='u7')}\n", 3, "user_id"),
        (f"{HEADER}\n{row()}\n{row(time_ms='')}\n", 3, "time_ms"),
        (f"{HEADER}\n{row(time_ms='-5')}\n", 2, "time_ms"),
        (f"{HEADER}\n{row(time_ms='2022-04-30 18:00')}\n", 2, "time_ms"),
        (f"{HEADER}\n{row(is_click='yes')}\n", 2, "is_click"),
        (f"{HEADER}\n{row()}\n{row()[: row().rindex(',')]}\n", 3, "tab"),
        (f"{HEADER}\n{row()},9\n", 2, None),
    ],
    ids=[
        "text_video_id",
        "text_user_id",
        "null_time",
        "negative_time",
        "unparsable_time",
        "text_flag",
        "missing_value",
        "extra_value",
    ],
)
def test_bad_kuairand_value_names_file_line_and_column(paths, body, line, column):
    message = ingest_error(write_kuairand(paths, body))
    assert message.startswith(str(paths.landing / "kuairand" / "day.csv"))
    assert f"line {line}:" in message
    if column:
        assert f"column '{column}'" in message


def test_missing_header_column_is_named(paths):
    header = HEADER.replace(",tab", "")
    message = ingest_error(write_kuairand(paths, f"{header}\n{row()[: row().rindex(',')]}\n"))
    assert re.search(r"day\.csv: line 1: column 'tab' missing", message)


def test_extra_header_column_is_named(paths):
    message = ingest_error(write_kuairand(paths, f"{HEADER},comment\n{row()},x\n"))
    assert re.search(r"day\.csv: line 1: column 'comment' not expected", message)


def test_empty_file_is_rejected(paths):
    assert re.search(r"day\.csv: line 1: empty file", ingest_error(write_kuairand(paths, "")))


def test_header_only_file_is_rejected(paths):
    folder = kuairand_landing(paths)
    write_kuairand(paths, f"{HEADER}\n", name="z_day.csv")
    assert re.search(r"z_day\.csv: line 2: no data rows", ingest_error(folder))


def test_non_utf8_bytes_are_rejected_with_line(paths):
    body = f"{HEADER}\n{row()}\n".encode() + b"\xff\xfe" + f"{row()}\n".encode()
    message = ingest_error(write_kuairand(paths, body))
    assert "day.csv: line 3: column 'user_id'" in message


def test_non_utf8_text_id_in_mapped_csv_is_rejected(paths):
    folder = paths.landing / "csv"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_bytes(b"user,item,ts\nalice,film1,100\nb\xffb,film2,200\n")
    message = ingest_error(folder, source="csv", csv_user_column="user", csv_item_column="item",
                           csv_time_column="ts")  # fmt: skip
    assert "a.csv: line 3: column 'user': invalid UTF-8" in message


def test_truncated_last_line_is_rejected(paths):
    body = f"{HEADER}\n{row()}\n{row()[:30]}"
    assert "day.csv: line 3:" in ingest_error(write_kuairand(paths, body))


def test_truncated_last_value_without_newline_is_rejected(paths):
    body = f"{HEADER}\n{row()}\n{row()[:-2]}"
    assert re.search(r"day\.csv: line 3: last line has no line ending", ingest_error(write_kuairand(paths, body)))


def test_non_numeric_movielens_id_is_rejected(paths):
    folder = paths.landing / "movielens"
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("1::10::5::978300760\nx::11::3::978300761\n")
    message = ingest_error(folder, source="movielens")
    assert "ratings.dat: line 2: column 'UserID'" in message


def test_lfm1b_row_with_missing_field_is_rejected(paths):
    folder = paths.landing / "lfm1b"
    folder.mkdir(parents=True)
    (folder / "LFM-1b_LEs.txt").write_text("1\t2\t3\t4\t1200000000\n1\t2\t3\t1200000001\n")
    message = ingest_error(folder, source="lfm1b")
    assert "LFM-1b_LEs.txt: line 2:" in message and "too few columns" in message


def test_duplicate_events_are_dropped_and_counted(paths):
    folder = kuairand_landing(paths)
    shutil_copy = (folder / "again.csv").write_bytes
    shutil_copy(KUAIRAND_SAMPLE.read_bytes())  # the same day delivered twice
    result = materialize(kuairand_config(folder))
    meta = result.asset_materializations_for_node("events")[0].metadata
    assert meta["duplicates_dropped"].value == 85
    assert table(paths, "SELECT count(*) FROM events")[0][0] == 85


def test_single_event_users_are_filtered_and_counted(paths):
    folder = kuairand_landing(paths)
    write_kuairand(paths, f"{HEADER}\n{row(user_id='99')}\n", name="late.csv")
    result = materialize(kuairand_config(folder))
    meta = result.asset_materializations_for_node("events")[0].metadata
    assert meta["filtered_events_dropped"].value == 1
    assert table(paths, "SELECT count(*) FROM user_map")[0][0] == 2


def test_failed_ingest_leaves_previous_tables_intact(paths):
    folder = kuairand_landing(paths)
    materialize(kuairand_config(folder))
    before = {t: table(paths, f"SELECT * FROM {t} ORDER BY ALL") for t in ("raw_events", "events", "splits")}
    write_kuairand(paths, f"{HEADER}\n{row(time_ms='soon')}\n", name="broken.csv")
    with pytest.raises(IngestError, match=r"broken\.csv: line 2: column 'time_ms'"):
        materialize(kuairand_config(folder))
    after = {t: table(paths, f"SELECT * FROM {t} ORDER BY ALL") for t in before}
    assert after == before
