"""Hostile or unusual raw input: names and paths that try to leave the project, files still being written,
implausible timestamps, and the many shapes of real CSV and Parquet files. Each either fails with one clear
line naming file, line and column, or is read correctly."""

import gzip
import re
import shutil
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from pipelines.data.config import RawEventsConfig
from pipelines.data.ingest import ingest
from pipelines.data.sources.files import IngestError
from pipelines.paths import ProjectPaths
from tests.data.conftest import KUAIRAND_SAMPLE, kuairand_config, kuairand_landing, materialize, ops_config, table
from tests.data.test_bad_input import HEADER, ROW, row, write_kuairand

PLAUSIBLE_MS = 1_600_000_000_000  # 2020-09-13: every KuaiRand timestamp is later


def raw_config(config: dict, **raw: object) -> dict:
    config["raw_events"]["config"].update(raw)
    return config


def refused(config: dict) -> str:
    """The one-line IngestError the raw_events run fails with."""
    with pytest.raises(IngestError) as failure:
        materialize(config, selection="raw_events")
    message = str(failure.value)
    assert "\n" not in message
    return message


def config_refused(config: dict) -> dict:
    """The single pydantic error a bad raw_events config fails the run with: its field and message."""
    with pytest.raises(ValidationError) as failure:
        materialize(config, selection="raw_events")
    [error] = failure.value.errors()
    assert "\n" not in error["msg"]
    return error


def csv_landing(paths: ProjectPaths, text: str | bytes, name: str = "a.csv") -> Path:
    folder = paths.landing / "csv"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(text.encode() if isinstance(text, str) else text)
    return folder


def csv_config(folder: Path, **raw: object) -> dict:
    mapping = {"csv_user_column": "user", "csv_item_column": "item", "csv_time_column": "ts"}
    return ops_config(raw_events={"source": "csv", "landing_dir": str(folder), **mapping, **raw})


def raw_events(paths: ProjectPaths) -> list[tuple]:
    return table(paths, "SELECT user_raw, item_raw, ts FROM raw_events ORDER BY row_id")


# 1. Dataset names


@pytest.mark.parametrize("name", ["../landing/csv", ".", "/some/dir", "../../../X", "a/b", "it's", "x" * 65])
def test_dataset_name_must_be_a_plain_name(paths, name):
    error = config_refused(raw_config(kuairand_config(kuairand_landing(paths)), dataset=name))
    assert error["loc"] == ("dataset",)
    assert "letters, digits" in error["msg"]
    assert not (paths.home / "some").exists() and not (paths.data / "landing" / "csv").exists()


# 2. Paths outside the landing folder


@pytest.mark.parametrize("pattern", ["../../../etc/passwd", "/etc/passwd", "sub/../../x.csv"])
def test_file_glob_cannot_leave_the_landing_dir(paths, pattern):
    error = config_refused(raw_config(kuairand_config(kuairand_landing(paths)), file_glob=pattern))
    assert error["loc"] == ("file_glob",)
    assert "relative pattern without '..'" in error["msg"]


@pytest.mark.parametrize("landing_dir", ["/etc", "../../..", "kuairand/../../.."])
def test_landing_dir_must_lie_inside_the_landing_folder(paths, landing_dir):
    kuairand_landing(paths)
    message = refused(raw_config(kuairand_config(paths.landing), landing_dir=landing_dir))
    assert message.startswith(f"landing_dir {landing_dir!r}: outside the landing folder {paths.landing}")


def test_relative_landing_dir_is_taken_from_the_landing_folder(paths):
    kuairand_landing(paths, name="kuairand_may")
    materialize(raw_config(kuairand_config(paths.landing), landing_dir="kuairand_may"), selection="raw_events")
    assert len(raw_events(paths)) == 85


def test_symlink_to_a_file_outside_the_landing_folder_is_refused(paths, tmp_path):
    outside = tmp_path / "outside.csv"
    shutil.copy(KUAIRAND_SAMPLE, outside)
    folder = kuairand_landing(paths)
    (folder / "linked.csv").symlink_to(outside)
    message = refused(kuairand_config(folder))
    assert message.startswith(f"{folder / 'linked.csv'}: links to a file outside the landing folder")


def test_symlinked_landing_dir_outside_the_landing_folder_is_refused(paths, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(KUAIRAND_SAMPLE, outside / "day.csv")
    paths.landing.mkdir(parents=True)
    (paths.landing / "kuairand").symlink_to(outside)
    assert "outside the landing folder" in refused(kuairand_config(paths.landing / "kuairand"))


def test_errors_quote_at_most_80_characters_of_file_content(paths):
    secret = "root:x:0:0:root:/root:/bin/bash," * 20
    folder = csv_landing(paths, f"{secret}\nvalue\n")
    message = refused(csv_config(folder))
    assert "root:x:0:0" in message and secret[:200] not in message
    assert len(message) < 80 + 2 * len(str(folder / "a.csv")) + 120


# 3. The landing convention and files that change while they are read


def test_hidden_and_unpublished_files_are_not_read(paths):
    folder = kuairand_landing(paths)
    for name in [".hidden.csv", "late.csv.part", "late.csv.tmp"]:
        (folder / name).write_text("half a file, still being written")
    materialize(raw_config(kuairand_config(folder), file_glob="*.csv*"), selection="raw_events")
    assert len(raw_events(paths)) == 85


def test_file_growing_during_ingest_is_refused_or_read_whole(paths):
    """A writer appends rows in two halves (the first ends inside time_ms) while ingest runs again and again:
    every run is refused with a clear message or loads only whole rows, never a cut-off timestamp."""
    folder = write_kuairand(paths, f"{HEADER}\n" + f"{ROW}\n" * 100, name="live.csv")
    cut = ROW.index("1651314030792") + 5
    stop = threading.Event()

    def append_rows_in_two_halves() -> None:
        with (folder / "live.csv").open("a") as f:
            while not stop.is_set():
                for part, pause in ((ROW[:cut], 0.002), (ROW[cut:] + "\n", 0.01)):
                    f.write(part)
                    f.flush()
                    time.sleep(pause)

    clear_refusal = re.compile(
        r"live\.csv: (changed while being read \(size \d+ -> \d+\); publish files by writing live\.csv\.part "
        r"and renaming|line \d+: last line has no line ending)"
    )
    config = RawEventsConfig(source="kuairand", landing_dir=str(folder))
    writer = threading.Thread(target=append_rows_in_two_halves)
    writer.start()
    outcomes = []
    try:
        with duckdb.connect() as con:
            for _ in range(40):
                try:
                    ingest(con, config, paths)
                except IngestError as error:
                    assert clear_refusal.match(str(error).removeprefix(str(folder) + "/")), str(error)
                    outcomes.append("refused")
                    continue
                cut_off = con.execute("SELECT count(*) FROM raw_events WHERE ts < $ms", {"ms": PLAUSIBLE_MS})
                assert cut_off.fetchone()[0] == 0
                outcomes.append("loaded")
    finally:
        stop.set()
        writer.join()
    assert "refused" in outcomes


def test_rows_rejected_by_an_earlier_ingest_are_not_reported_again(paths):
    """DuckDB keeps every scan's rejected rows in one table per connection: once the bad file is fixed, an
    ingest on the same connection loads it instead of failing with the old row."""
    folder = write_kuairand(paths, f"{HEADER}\n{ROW}\n{ROW[:40]}\n", name="fixed.csv")
    config = RawEventsConfig(source="kuairand", landing_dir=str(folder))
    with duckdb.connect() as con:
        with pytest.raises(IngestError, match=r"line 3: column .*: too few columns"):
            ingest(con, config, paths)
        (folder / "fixed.csv").write_text(f"{HEADER}\n{ROW}\n{ROW}\n")
        assert ingest(con, config, paths).staged_rows == 2


# 4. Plausible timestamps


@pytest.mark.parametrize(
    ("ts", "time_unit", "hint"),
    [
        ("1651314030", "ms", "looks like seconds read as milliseconds: set time_unit: s"),
        ("1651314030792", "s", "looks like milliseconds read as seconds: set time_unit: ms"),
        ("1651314030792123456", "s", "looks like nanoseconds read as seconds: set time_unit: ns"),
    ],
    ids=["seconds_as_ms", "ms_as_seconds", "ns_as_seconds_overflows"],
)
def test_timestamp_in_the_wrong_unit_is_refused_with_a_hint(paths, ts, time_unit, hint):
    folder = csv_landing(paths, f"user,item,ts\nalice,film1,{ts}\n")
    message = refused(csv_config(folder, time_unit=time_unit))
    assert message.startswith(f"{folder / 'a.csv'}: line 2: column 'ts': timestamp {ts} read as ")
    assert message.endswith(hint)


def test_nanosecond_timestamps_are_read_with_time_unit_ns(paths):
    folder = csv_landing(paths, "user,item,ts\nalice,film1,1651314030792123456\n")
    materialize(csv_config(folder, time_unit="ns"), selection="raw_events")
    assert raw_events(paths) == [("alice", "film1", 1651314030792)]


def test_kuairand_timestamp_in_seconds_names_line_and_fixed_unit(paths):
    folder = write_kuairand(paths, f"{HEADER}\n{row()}\n{row(time_ms='1651314030')}\n")
    message = refused(kuairand_config(folder))
    assert "day.csv: line 3: column 'time_ms': timestamp 1651314030 read as milliseconds" in message
    assert message.endswith("looks like seconds read as milliseconds, but this format's timestamps are milliseconds")


def test_timestamp_range_is_configurable(paths):
    folder = csv_landing(paths, "user,item,ts\nalice,film1,5\n")
    message = refused(csv_config(folder, max_timestamp="2030-01-01"))
    assert "line 2: column 'ts': timestamp 5 read as seconds is 1970-01-01 00:00:05, outside 1995-01-01" in message
    materialize(csv_config(folder, min_timestamp="1970-01-01"), selection="raw_events")
    assert raw_events(paths) == [("alice", "film1", 5000)]


def test_implausible_timestamp_leaves_previous_tables_intact(paths):
    folder = kuairand_landing(paths)
    materialize(kuairand_config(folder))
    before = table(paths, "SELECT * FROM raw_events ORDER BY ALL")
    write_kuairand(paths, f"{HEADER}\n{row(time_ms='1651314030792000')}\n", name="z_day.csv")
    assert "z_day.csv: line 2: column 'time_ms'" in refused(kuairand_config(folder))
    assert table(paths, "SELECT * FROM raw_events ORDER BY ALL") == before


# 5. Line numbers


def test_blank_lines_do_not_shift_reported_line_numbers(paths):
    body = f"{HEADER}\n{row()}\n\n\n{row()}\n\n{row(time_ms='')}\n"
    message = refused(kuairand_config(write_kuairand(paths, body)))
    assert "day.csv: line 7: column 'time_ms': missing" in message


def test_quoted_line_breaks_do_not_shift_reported_line_numbers(paths):
    body = 'user,item,ts\nalice,"a film\nin two lines",1651314030\n\nbob,film2,soon\n'
    assert "a.csv: line 5: column 'ts': cannot parse" in refused(csv_config(csv_landing(paths, body)))


def test_quoted_line_breaks_do_not_shift_missing_value_line_numbers(paths):
    body = 'user,item,ts\nalice,"a film\nin two lines",1651314030\n\n ,film2,1651314031\n'
    assert "a.csv: line 5: column 'user': missing" in refused(csv_config(csv_landing(paths, body)))


# 6. Clear errors or correct acceptance


def test_byte_order_mark_before_the_header_is_accepted(paths):
    folder = write_kuairand(paths, "\ufeff" + KUAIRAND_SAMPLE.read_text())
    materialize(kuairand_config(folder), selection="raw_events")
    assert len(raw_events(paths)) == 85


def test_gzipped_files_are_read_by_the_default_glob(paths):
    lines = KUAIRAND_SAMPLE.read_text().splitlines(keepends=True)
    folder = write_kuairand(paths, "".join(lines[:50]), name="day1.csv")
    (folder / "day2.csv.gz").write_bytes(gzip.compress((lines[0] + "".join(lines[50:])).encode()))
    materialize(kuairand_config(folder), selection="raw_events")
    assert len(raw_events(paths)) == 85


def test_truncated_gzip_file_is_refused_naming_it(paths):
    data = gzip.compress(KUAIRAND_SAMPLE.read_bytes() * 50)
    folder = write_kuairand(paths, data[: len(data) // 2], name="day.csv.gz")
    assert refused(kuairand_config(folder)).startswith(f"{folder / 'day.csv.gz'}: cannot read the file")


def test_gzipped_bad_value_names_the_real_line(paths):
    folder = write_kuairand(paths, gzip.compress(f"{HEADER}\n{row()}\n\n{row(video_id='x')}\n".encode()), "d.csv.gz")
    assert "d.csv.gz: line 4: column 'video_id'" in refused(kuairand_config(folder))


def test_same_user_and_item_column_is_a_config_error(paths):
    folder = csv_landing(paths, "user,item,ts\nalice,film1,1651314030\n")
    error = config_refused(csv_config(folder, csv_item_column="user"))
    assert "csv_user_column and csv_item_column are both 'user'" in error["msg"]


@pytest.mark.parametrize("delimiter", ["", ";;", '"'])
def test_delimiter_must_be_one_character(paths, delimiter):
    folder = csv_landing(paths, "user,item,ts\nalice,film1,1651314030\n")
    error = config_refused(csv_config(folder, csv_delimiter=delimiter))
    assert error["loc"] == ("csv_delimiter",) and "must be one character" in error["msg"]


def test_repeated_header_name_is_named(paths):
    folder = csv_landing(paths, "user,item,user,ts\nalice,film1,bob,1651314030\n")
    assert "a.csv: line 1: column 'user' appears twice in the header" in refused(csv_config(folder))


def test_quoted_header_name_holding_the_delimiter_is_accepted(paths):
    folder = csv_landing(paths, '"user, id",item,ts\nalice,film1,1651314030\n')
    materialize(csv_config(folder, csv_user_column="user, id"), selection="raw_events")
    assert raw_events(paths) == [("alice", "film1", 1651314030000)]


@pytest.mark.parametrize("arrow_type", [pa.timestamp("us"), pa.timestamp("ms", tz="UTC"), pa.date32()])
def test_parquet_timestamp_column_is_read_as_epoch_milliseconds(paths, arrow_type):
    folder = paths.landing / "parquet"
    folder.mkdir(parents=True)
    when = pa.array([1651314030792, 1651400000000], pa.timestamp("ms")).cast(arrow_type)
    pq.write_table(pa.table({"who": ["a", "b"], "what": ["x", "y"], "when": when}), folder / "day.parquet")
    mapping = {"csv_user_column": "who", "csv_item_column": "what", "csv_time_column": "when", "time_unit": "s"}
    config = ops_config(raw_events={"source": "parquet", "landing_dir": str(folder), **mapping})
    materialize(config, selection="raw_events")
    expected = [1651314030792, 1651400000000] if arrow_type != pa.date32() else [1651276800000, 1651363200000]
    assert [ts for _, _, ts in raw_events(paths)] == expected


def test_ids_are_trimmed_of_surrounding_spaces(paths):
    folder = csv_landing(paths, 'user,item,ts\n  alice , film1  ,1651314030\n" bob",film2,1651314031\n')
    materialize(csv_config(folder), selection="raw_events")
    assert [(user, item) for user, item, _ in raw_events(paths)] == [("alice", "film1"), ("bob", "film2")]


@pytest.mark.parametrize(("value", "code"), [("ali\x00ce", "U+0000"), ("ali\tce", "U+0009"), ("ali\x1bce", "U+001B")])
def test_ids_with_control_characters_are_refused(paths, value, code):
    folder = csv_landing(paths, f"user,item,ts\nbob,film1,1651314030\n\n{value},film2,1651314031\n")
    message = refused(csv_config(folder))
    assert f"a.csv: line 4: column 'user': id {value!r} contains the control character {code}" in message


# 7. Headerless CSV and row filters

TAOBAO = "1,100,7,pv,1511544070\n1,101,7,buy,1511544080\n2,100,7,buy,1511544090\n2,102,8,cart,1511544095\n"
TAOBAO_COLUMNS = ["user", "item", "category", "behavior", "ts"]


def test_headerless_taobao_file_is_read_by_named_columns_and_filtered(paths):
    folder = csv_landing(paths, TAOBAO, name="UserBehavior.csv")
    config = csv_config(folder, csv_header=False, csv_columns=TAOBAO_COLUMNS, filter_column="behavior",
                        filter_values=["buy"])  # fmt: skip
    materialize(config, selection="raw_events")
    assert raw_events(paths) == [("1", "101", 1511544080000), ("2", "100", 1511544090000)]


@pytest.mark.parametrize(
    ("bad", "problem"), [("3,103,9,buy,1511544099,x", "too many columns"), ("3,103,9,buy", "too few columns")]
)
def test_headerless_row_with_wrong_column_count_names_the_line(paths, bad, problem):
    folder = csv_landing(paths, TAOBAO + "\n" + bad + "\n", name="UserBehavior.csv")
    message = refused(csv_config(folder, csv_header=False, csv_columns=TAOBAO_COLUMNS))
    assert "UserBehavior.csv: line 6:" in message and problem in message


def test_unknown_filter_column_is_a_clear_error(paths):
    folder = csv_landing(paths, "user,item,ts\nalice,film1,1651314030\n")
    message = refused(csv_config(folder, filter_column="behavior", filter_values=["buy"]))
    assert "a.csv: line 1: column 'behavior' missing from header" in message
    error = config_refused(csv_config(folder, csv_header=False, csv_columns=["user", "item", "ts"],
                                      filter_column="behavior", filter_values=["buy"]))  # fmt: skip
    assert "filter_column 'behavior' is not one of csv_columns" in error["msg"]


def test_parquet_rows_are_filtered_by_value(paths):
    folder = paths.landing / "parquet"
    folder.mkdir(parents=True)
    events = {"u": ["a", "a", "b"], "i": ["x", "y", "z"], "t": [1511544070, 1511544080, 1511544090],
              "kind": ["pv", "buy", "buy"]}  # fmt: skip
    pq.write_table(pa.table(events), folder / "day.parquet")
    config = ops_config(raw_events={"source": "parquet", "landing_dir": str(folder), "csv_user_column": "u",
                                    "csv_item_column": "i", "csv_time_column": "t", "filter_column": "kind",
                                    "filter_values": ["buy"]})  # fmt: skip
    materialize(config, selection="raw_events")
    assert raw_events(paths) == [("a", "y", 1511544080000), ("b", "z", 1511544090000)]
