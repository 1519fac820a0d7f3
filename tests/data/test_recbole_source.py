"""The RecBole atomic source: typed headers mapped by field name, read end to end through the data assets."""

import csv
import json
import math
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.data import export_dir_for
from pipelines.data.sources.files import IngestError
from pipelines.paths import ProjectPaths
from tests.data.conftest import FIXTURES, check_outcomes, materialize, ops_config, table

SAMPLE = FIXTURES / "recbole" / "ml-sample.inter"
HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def landing(paths: ProjectPaths, text: str | None = None, name: str = SAMPLE.name) -> Path:
    """``data/landing/recbole`` holding the sample, or ``text`` as file ``name``."""
    folder = paths.landing / "recbole"
    folder.mkdir(parents=True, exist_ok=True)
    if text is None:
        shutil.copy(SAMPLE, folder / name)
    else:
        (folder / name).write_text(text)
    return folder


def recbole_config() -> dict:
    return ops_config(
        raw_events={"source": "recbole"},
        events={"min_events_per_user": 1, "min_item_occurrences": 1},
        splits={"mode": "leave_one_out"},
    )


def sample_histories() -> dict[str, list[str]]:
    """Each user's items in time order (seconds, fractions dropped), equal times in file order."""
    with SAMPLE.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    ordered = sorted(enumerate(rows), key=lambda r: (math.floor(float(r[1]["timestamp:float"])), r[0]))
    histories: dict[str, list[str]] = {}
    for _, row in ordered:
        histories.setdefault(row["user_id:token"], []).append(row["item_id:token"])
    return histories


def exported_histories(paths: ProjectPaths) -> tuple[dict[str, list[str]], dict[str, list[int]], dict]:
    """The export's histories and split labels keyed by raw user id, items as raw ids, and its metadata."""
    folder = export_dir_for("recbole")
    histories = pq.read_table(folder / "histories.parquet").to_pylist()
    users = dict(table(paths, "SELECT user_id, user_raw FROM user_map"))
    items = dict(table(paths, "SELECT item_id, item_raw FROM item_map"))
    by_user = {users[h["user_id"]]: [items[i] for i in h["items"]] for h in histories}
    labels = {users[h["user_id"]]: h["split"] for h in histories}
    return by_user, labels, json.loads((folder / "metadata.json").read_text())


def ingest_error(paths: ProjectPaths, text: str, name: str = "bad.inter") -> str:
    landing(paths, text, name)
    with pytest.raises(IngestError) as failure:
        materialize(recbole_config(), selection="raw_events")
    message = str(failure.value)
    assert "\n" not in message
    return message


def test_atomic_file_becomes_an_export_in_time_order(paths):
    landing(paths)
    result = materialize(recbole_config())
    assert all(check_outcomes(result).values())
    histories, labels, metadata = exported_histories(paths)
    expected = sample_histories()
    assert histories == expected
    assert metadata["num_users"] == 4
    assert metadata["num_items"] == len({item for items in expected.values() for item in items})
    assert all(split[-2:] == [1, 2] and set(split[:-2]) == {0} for split in labels.values())
    stamps = table(paths, "SELECT list(ts ORDER BY ts) FROM raw_events WHERE user_raw = '1'")[0][0]
    assert 978310121000 in stamps  # 978310121.75 s, floored to whole seconds


def test_fields_are_found_by_name_in_any_column_order(paths):
    text = "timestamp:float\tlabel:float\titem_id:token\tuser_id:token\n978300000\t1\tx\tu\n978300005\t0\ty\tu\n"
    landing(paths, text, "reordered.inter")
    materialize(recbole_config(), selection="raw_events")
    assert table(paths, "SELECT user_raw, item_raw, ts FROM raw_events ORDER BY ts") == [
        ("u", "x", 978300000000),
        ("u", "y", 978300005000),
    ]


def test_file_without_item_id_column_names_file_and_column(paths):
    message = ingest_error(paths, "user_id:token\trating:float\ttimestamp:float\n1\t5\t978300760\n", "no_item.inter")
    assert message.startswith(f"{paths.landing / 'recbole' / 'no_item.inter'}: line 1: column 'item_id:token' missing")


@pytest.mark.parametrize(
    ("row", "column", "problem"),
    [
        ("2\t661\t978300761\n", "", "too few columns"),
        ("2\t661\t3\tyesterday\n", "column 'timestamp:float'", "cannot parse"),
        ("2\t\t3\t978300761\n", "column 'item_id:token'", "missing or unparsable value"),
    ],
    ids=["missing_field", "text_timestamp", "blank_item"],
)
def test_malformed_row_names_file_and_line(paths, row, column, problem):
    body = HEADER + "1\t1193\t5\t978300760\n1\t661\t3\t978302109\n\n" + row
    message = ingest_error(paths, body)
    assert message.startswith(f"{paths.landing / 'recbole' / 'bad.inter'}: line 5: {column}")
    assert problem in message
