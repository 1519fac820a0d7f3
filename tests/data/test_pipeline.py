"""The data assets end to end on real files: tables, checks, the Contract 1 export, re-runs."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.data import export_dir_for
from pipelines.data.export import SCHEMA
from tests.data.conftest import (
    KUAIRAND_SAMPLE,
    TINY,
    check_outcomes,
    kuairand_config,
    kuairand_landing,
    materialize,
    ops_config,
    table,
)

CONTRACT_KEYS = {
    "dataset", "num_users", "num_items", "split_mode", "cutoff_valid_ms", "cutoff_test_ms",
    "num_train_events", "num_valid_targets", "num_test_targets", "num_context_events", "num_cold_valid_targets",
    "num_cold_test_targets", "target_protocol", "fingerprint",
}  # fmt: skip


def load_export(dataset: str) -> tuple[pa.Table, dict]:
    folder = export_dir_for(dataset)
    return pq.read_table(folder / "histories.parquet"), json.loads((folder / "metadata.json").read_text())


def test_tiny_synthetic_fills_every_table_and_passes_every_check(paths):
    result = materialize(TINY)
    assert result.success
    outcomes = check_outcomes(result)
    assert len(outcomes) == 10 and all(outcomes.values())
    for name in ("raw_events", "events", "user_map", "item_map", "sequences", "splits"):
        assert table(paths, f"SELECT count(*) FROM {name}")[0][0] > 0
    meta = result.asset_materializations_for_node("splits")[0].metadata
    assert meta["dataset"].value == "synthetic"
    assert meta["export_path"].value == str(export_dir_for("synthetic").resolve())


def test_export_follows_contract_1(paths):
    materialize(TINY)
    histories, metadata = load_export("synthetic")
    assert histories.schema.remove_metadata() == SCHEMA
    assert set(metadata) == CONTRACT_KEYS
    users = histories["user_id"].to_numpy()
    assert users[0] == 1 and np.all(np.diff(users) == 1)
    items = histories["items"].combine_chunks()
    assert items.values.to_numpy().min() >= 1 and items.values.to_numpy().max() == metadata["num_items"]
    labels = histories["split"].combine_chunks().values.to_numpy()
    stamps = histories["timestamps"].combine_chunks().values.to_numpy()
    assert stamps[labels == 0].max() < metadata["cutoff_valid_ms"] <= stamps[labels == 1].min()
    assert stamps[labels == 2].min() >= metadata["cutoff_test_ms"]
    assert stamps[labels == 3].min() >= metadata["cutoff_valid_ms"]
    assert np.bincount(labels, minlength=4).tolist() == [
        metadata["num_train_events"], metadata["num_valid_targets"], metadata["num_test_targets"],
        metadata["num_context_events"],
    ]  # fmt: skip


def test_same_input_gives_identical_tables_and_fingerprint(paths):
    materialize(TINY)
    first = {t: table(paths, f"SELECT * FROM {t}") for t in ("events", "user_map", "item_map", "splits")}
    fingerprint = load_export("synthetic")[1]["fingerprint"]
    materialize(TINY)
    assert {t: table(paths, f"SELECT * FROM {t}") for t in first} == first
    assert load_export("synthetic")[1]["fingerprint"] == fingerprint


def test_synthetic_seed_changes_the_data(paths):
    materialize(TINY)
    first = load_export("synthetic")[1]["fingerprint"]
    config = {"raw_events": {"config": {**TINY["raw_events"]["config"], "seed": 1}}}
    materialize(config)
    assert load_export("synthetic")[1]["fingerprint"] != first


def test_kuairand_sample_end_to_end(paths):
    result = materialize(kuairand_config(kuairand_landing(paths)))
    assert all(check_outcomes(result).values())
    histories, metadata = load_export("kuairand")
    assert metadata["num_users"] == 2 and histories.num_rows == 2
    assert sum(len(h) for h in histories["items"].to_pylist()) == 85
    assert table(paths, "SELECT list(user_raw ORDER BY user_id) FROM user_map")[0][0] == [0, 1]


def test_kuairand_click_filter_keeps_only_clicks(paths):
    clicks = sum(line.split(",")[5] == "1" for line in KUAIRAND_SAMPLE.read_text().splitlines()[1:])
    config = kuairand_config(kuairand_landing(paths), min_events_per_user=1)
    config["raw_events"]["config"]["kuairand_interactions"] = "click"
    materialize(config, selection="raw_events")
    assert table(paths, "SELECT count(*) FROM raw_events")[0][0] == clicks


def test_equal_timestamps_keep_source_row_order(paths):
    folder = paths.landing / "csv"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text("u,i,t\nx,c,5\nx,a,5\nx,b,5\nx,d,1\n")
    config = ops_config(
        raw_events={"source": "csv", "landing_dir": str(folder), "csv_user_column": "u",
                    "csv_item_column": "i", "csv_time_column": "t", "min_timestamp": "1970-01-01"},
        events={"min_events_per_user": 1},
        splits={"mode": "leave_one_out"},
    )  # fmt: skip
    materialize(config)
    order = table(
        paths, "SELECT list(m.item_raw ORDER BY e.ts, e.row_id) FROM events e JOIN item_map m USING (item_id)"
    )
    assert order[0][0] == ["d", "c", "a", "b"]
    histories, _ = load_export("csv")
    assert histories["split"].to_pylist() == [[0, 0, 1, 2]]


def test_new_landing_files_are_picked_up(paths):
    folder = paths.landing / "kuairand"
    folder.mkdir(parents=True)
    lines = KUAIRAND_SAMPLE.read_text().splitlines(keepends=True)
    (folder / "day1.csv").write_text("".join(lines[:50]))
    config = kuairand_config(folder)
    materialize(config, selection="raw_events")
    assert table(paths, "SELECT count(*) FROM raw_events")[0][0] == 49
    (folder / "day2.csv").write_text(lines[0] + "".join(lines[50:]))
    materialize(config, selection="raw_events")
    assert table(paths, "SELECT count(*) FROM raw_events")[0][0] == 85


def test_leave_one_out_labels_last_two_events(paths):
    config = {**TINY, "splits": {"config": {"mode": "leave_one_out"}}}
    result = materialize(config)
    assert all(check_outcomes(result).values())
    histories, metadata = load_export("synthetic")
    assert metadata["cutoff_valid_ms"] is None and metadata["split_mode"] == "leave_one_out"
    for labels in histories["split"].to_pylist():
        assert labels[-2:] == [1, 2] and set(labels[:-2]) == {0}


def test_explicit_dates_count_cold_targets(paths):
    folder = paths.landing / "movielens"
    folder.mkdir(parents=True)
    # 1 Jan 2001 = 978307200; item 30 first appears in the test period.
    (folder / "ratings.dat").write_text(
        "1::10::5::978000000\n1::20::4::978100000\n1::10::3::978400000\n1::30::4::978800000\n"
        "2::20::5::978000001\n2::10::4::978100001\n2::30::2::978900000\n"
    )
    config = ops_config(
        raw_events={"source": "movielens", "landing_dir": str(folder), "dataset": "ml-tiny"},
        events={"min_events_per_user": 1},
        splits={"valid_start": "2001-01-01", "test_start": "2001-01-05"},
    )
    result = materialize(config)
    assert all(check_outcomes(result).values())
    _, metadata = load_export("ml-tiny")
    assert metadata["cutoff_valid_ms"] == 978307200000
    assert (metadata["num_valid_targets"], metadata["num_test_targets"]) == (1, 2)
    assert (metadata["num_cold_valid_targets"], metadata["num_cold_test_targets"]) == (0, 2)
    meta = result.asset_materializations_for_node("splits")[0].metadata
    assert meta["items_first_seen_after_valid_cutoff"].value == 1


def test_k_core_filter_leaves_no_rare_item_or_short_user(paths):
    config = {**TINY, "events": {"config": {"min_events_per_user": 200, "min_item_occurrences": 20,
                                            "k_core": True}}}  # fmt: skip
    result = materialize(config, selection="*sequences")
    assert all(check_outcomes(result).values())
    assert table(paths, "SELECT min(c) FROM (SELECT count(*) c FROM events GROUP BY item_id)")[0][0] >= 20


def test_lfm1b_layout_at_artist_level(paths):
    config = {"raw_events": {"config": {**TINY["raw_events"]["config"], "synthetic_layout": "lfm1b",
                                        "lfm1b_item": "artist"}}}  # fmt: skip
    assert all(check_outcomes(materialize(config)).values())
    assert table(paths, "SELECT max(item_raw) FROM item_map")[0][0] < 300 // 10


def test_parquet_source_with_column_mapping(paths):
    folder = paths.landing / "parquet"
    folder.mkdir(parents=True)
    for day in range(2):
        pq.write_table(
            pa.table({"who": ["a", "b", "a"], "what": ["x", "y", "z"], "when": [day * 10 + k for k in range(3)]}),
            folder / f"day{day}.parquet",
        )
    config = ops_config(
        raw_events={"source": "parquet", "landing_dir": str(folder), "csv_user_column": "who",
                    "csv_item_column": "what", "csv_time_column": "when", "time_unit": "ms",
                    "min_timestamp": "1970-01-01"},
        events={"min_events_per_user": 1},
        splits={"mode": "leave_one_out"},
    )  # fmt: skip
    materialize(config)
    assert table(paths, "SELECT count(*), max(ts) FROM events")[0] == (6, 12)


def test_export_is_replaced_as_a_whole(paths):
    materialize(TINY)
    first = export_dir_for("synthetic").resolve()
    stale = first / "stale.txt"
    stale.write_text("left from an older export")
    materialize(TINY)
    current = export_dir_for("synthetic").resolve()
    assert current != first and not (current / "stale.txt").exists()
    assert stale.exists()  # a run still training from the older version keeps it
    assert not [p for p in paths.exports.iterdir() if p.name.startswith(".synthetic")]
    assert not [p for p in current.parent.iterdir() if p.name.startswith(".")]
