"""The data assets: raw_events -> events -> sequences -> splits, each a DuckDB table (and, for splits,
the Parquet export the trainers read). All four write the warehouse, so they share the pool ``POOL``.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb as duckdb_lib
from dagster_duckdb import DuckDBResource

from pipelines.data import checks
from pipelines.data.config import EventsConfig, RawEventsConfig, SplitsConfig
from pipelines.data.events import build_events
from pipelines.data.export import write_export
from pipelines.data.ingest import ingest
from pipelines.data.metadata import history_length_table
from pipelines.data.resources import POOL
from pipelines.data.splits import build_splits
from pipelines.data.sql import fetch_one, run_sql
from pipelines.paths import ProjectPaths

GROUP = "data"


@contextmanager
def _connect(resource: DuckDBResource) -> Iterator[duckdb_lib.DuckDBPyConnection]:
    """A warehouse connection that is closed even when the step fails (the resource only closes on success)."""
    if resource.database != ":memory:":
        Path(resource.database).parent.mkdir(parents=True, exist_ok=True)
    with resource.get_connection() as con:
        try:
            yield con
        finally:
            con.close()


@dg.asset(pool=POOL, group_name=GROUP, kinds={"duckdb"}, check_specs=checks.RAW_EVENTS_CHECKS)
def raw_events(config: RawEventsConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Every row of the landing files, validated and normalized (raw ids, ms timestamps, source row id)."""
    with _connect(duckdb) as con:
        summary = ingest(con, config, ProjectPaths.from_env())
        check_results = checks.raw_events_checks(con)
    return dg.MaterializeResult(
        metadata={
            "dataset": summary.dataset,
            "landing_dir": dg.MetadataValue.path(str(summary.landing_dir)),
            "files": summary.num_files,
            "staged_rows": summary.staged_rows,
            "row_count": summary.raw_events,
            "rows_not_interactions": summary.staged_rows - summary.raw_events,
            "synthetic_files_written": summary.generated,
        },
        check_results=check_results,
    )


@dg.asset(pool=POOL, group_name=GROUP, kinds={"duckdb"}, deps=[raw_events], check_specs=checks.EVENTS_CHECKS)
def events(config: EventsConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Deduplicated, filtered events with dense ids (tables events, user_map, item_map)."""
    with _connect(duckdb) as con:
        summary = build_events(con, config)
        check_results = checks.events_checks(con, config)
    return dg.MaterializeResult(
        metadata={
            "row_count": summary.events,
            "users": summary.users,
            "items": summary.items,
            "raw_events": summary.raw_events,
            "duplicates_dropped": summary.duplicates_dropped,
            "filtered_events_dropped": summary.filtered_events_dropped,
            "filter_rounds": summary.filter_rounds,
        },
        check_results=check_results,
    )


@dg.asset(pool=POOL, group_name=GROUP, kinds={"duckdb"}, deps=[events], check_specs=checks.SEQUENCES_CHECKS)
def sequences(duckdb: DuckDBResource) -> dg.MaterializeResult:
    """One row per user: item ids and timestamps in time order."""
    with _connect(duckdb) as con:
        run_sql(con, "sequences")
        events_count, users, items = fetch_one(con, "events_stats")
        lengths = history_length_table(con)
        check_results = checks.sequences_checks(con)
    return dg.MaterializeResult(
        metadata={"row_count": users, "events": events_count, "items": items, "history_lengths": lengths},
        check_results=check_results,
    )


@dg.asset(pool=POOL, group_name=GROUP, kinds={"duckdb", "parquet"}, deps=[sequences], check_specs=checks.SPLITS_CHECKS)
def splits(config: SplitsConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Train/validation/test labels per event, exported for the trainers to ``data/exports/<dataset>/``."""
    with _connect(duckdb) as con:
        summary = build_splits(con, config)
        check_results = checks.splits_checks(con, summary)
        (dataset,) = fetch_one(con, "dataset_name")
        lengths = history_length_table(con)
        export_path, metadata = write_export(con, dataset, summary)
    return dg.MaterializeResult(
        metadata={
            "dataset": dataset,
            "export_path": dg.MetadataValue.path(str(export_path)),
            "fingerprint": metadata["fingerprint"],
            "row_count": summary.num_users,
            "num_items": summary.num_items,
            "split_mode": summary.mode,
            "cutoff_valid_ms": summary.cutoff_valid_ms or 0,
            "cutoff_test_ms": summary.cutoff_test_ms or 0,
            "num_train_events": summary.num_train_events,
            "num_valid_targets": summary.num_valid_targets,
            "num_test_targets": summary.num_test_targets,
            "num_cold_valid_targets": summary.num_cold_valid_targets,
            "num_cold_test_targets": summary.num_cold_test_targets,
            "num_train_items": summary.num_train_items,
            "items_first_seen_after_valid_cutoff": summary.items_first_seen_after_valid_cutoff,
            "history_lengths": lengths,
        },
        check_results=check_results,
    )


DATA_ASSETS = [raw_events, events, sequences, splits]
