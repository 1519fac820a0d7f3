"""The data assets: raw_events -> events -> sequences -> splits, each a DuckDB table (and, for splits,
the Parquet export the trainers read). All four write the warehouse, so they share the pool ``POOL``.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from pipelines.data import checks
from pipelines.data.config import EventsConfig, RawEventsConfig, SplitsConfig
from pipelines.data.events import build_events, build_sequences
from pipelines.data.export import contract_metadata, write_export
from pipelines.data.ingest import ingest
from pipelines.data.metadata import history_length_table
from pipelines.data.resources import POOL, Warehouse
from pipelines.data.splits import build_splits
from pipelines.data.sql import fetch_one
from pipelines.data.table_writes import record_write, require_written_by
from pipelines.lineage import upstream
from pipelines.paths import ProjectPaths
from pipelines.serving.landing import land_served_events
from recmodels.data.split_data import target_protocol

GROUP = "data"


@contextmanager
def _writing(
    context: dg.AssetExecutionContext, warehouse: Warehouse, dataset: str
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The dataset's warehouse, recording on success that this run wrote this asset's tables."""
    with warehouse.connect(dataset) as con:
        yield con
        record_write(con, context.asset_key.to_user_string(), context.run_id)


@contextmanager
def _building_on(
    context: dg.AssetExecutionContext, warehouse: Warehouse, upstream_asset: str
) -> Iterator[tuple[str, duckdb.DuckDBPyConnection]]:
    """The dataset of the upstream materialization this run builds on (its own, else the latest), and its
    warehouse, after checking that no other run has rewritten the upstream tables since."""
    source = upstream(context, upstream_asset)
    dataset = str(source.value("dataset"))
    context.log.info(f"Building on {upstream_asset} of dataset {dataset!r} from run {source.run_id}.")
    with _writing(context, warehouse, dataset) as con:
        require_written_by(con, source, dataset)
        yield dataset, con


@dg.asset(pool=POOL, group_name=GROUP, kinds={"duckdb"}, check_specs=checks.RAW_EVENTS_CHECKS)
def raw_events(
    context: dg.AssetExecutionContext, config: RawEventsConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Every row of the landing files, validated and normalized (raw ids, ms timestamps, source row id), and
    every event the service acknowledged for the dataset."""
    paths = ProjectPaths.from_env()
    land_served_events(paths.serving / config.dataset_name, paths.served_events(config.dataset_name))
    with _writing(context, warehouse, config.dataset_name) as con:
        summary = ingest(con, config, paths)
        check_results = checks.raw_events_checks(con)
    return dg.MaterializeResult(
        metadata={
            "dataset": summary.dataset,
            "source": config.source,
            "landing_dir": dg.MetadataValue.path(str(summary.landing_dir)),
            "files": summary.num_files,
            "staged_rows": summary.staged_rows,
            "row_count": summary.raw_events,
            "rows_not_interactions": summary.staged_rows + summary.served_events - summary.raw_events,
            "served_events": summary.served_events,
            "synthetic_files_written": summary.generated,
        },
        check_results=check_results,
    )


@dg.asset(pool=POOL, group_name=GROUP, kinds={"duckdb"}, deps=[raw_events], check_specs=checks.EVENTS_CHECKS)
def events(context: dg.AssetExecutionContext, config: EventsConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Deduplicated, filtered events with dense ids (tables events, user_map, item_map)."""
    with _building_on(context, warehouse, "raw_events") as (dataset, con):
        summary = build_events(con, config)
        check_results = checks.events_checks(con, config)
    return dg.MaterializeResult(
        metadata={
            "dataset": dataset,
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
def sequences(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """One row per user: item ids and timestamps in time order."""
    with _building_on(context, warehouse, "events") as (dataset, con):
        batches = build_sequences(con)
        events_count, users, items = fetch_one(con, "events_stats")
        lengths = history_length_table(con)
        check_results = checks.sequences_checks(con)
    return dg.MaterializeResult(
        metadata={
            "dataset": dataset,
            "row_count": users,
            "events": events_count,
            "items": items,
            "user_batches": batches,
            "history_lengths": lengths,
        },
        check_results=check_results,
    )


@dg.asset(pool=POOL, group_name=GROUP, kinds={"duckdb", "parquet"}, deps=[sequences], check_specs=checks.SPLITS_CHECKS)
def splits(context: dg.AssetExecutionContext, config: SplitsConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Train/validation/test/context labels per event, exported for the trainers to ``data/exports/<dataset>/``.

    The export is replaced only when every check passes: a nonsense split never reaches the trainers.
    """
    with _building_on(context, warehouse, "sequences") as (dataset, con):
        summary = build_splits(con, config)
        check_results = checks.splits_checks(con, summary)
        lengths = history_length_table(con)
        failed = [result.check_name for result in check_results if not result.passed]
        if failed:
            context.log.error(f"Checks {failed} failed: the export of {dataset!r} was left as it was.")
            export = {"export_written": False}
        else:
            version, metadata = write_export(con, dataset, summary)
            export = {
                "export_written": True,
                "export_path": dg.MetadataValue.path(str(version)),
                "export_link": dg.MetadataValue.path(str(ProjectPaths.from_env().export(dataset))),
                "fingerprint": metadata["fingerprint"],
            }
    return dg.MaterializeResult(
        metadata={
            "dataset": dataset,
            **export,
            "row_count": summary.num_users,
            "num_items": summary.num_items,
            "split_mode": summary.mode,
            "target_protocol": target_protocol(contract_metadata(dataset, summary)),
            "cutoff_valid_ms": summary.cutoff_valid_ms or 0,
            "cutoff_test_ms": summary.cutoff_test_ms or 0,
            "num_train_events": summary.num_train_events,
            "num_valid_targets": summary.num_valid_targets,
            "num_test_targets": summary.num_test_targets,
            "num_context_events": summary.num_context_events,
            "num_cold_valid_targets": summary.num_cold_valid_targets,
            "num_cold_test_targets": summary.num_cold_test_targets,
            "num_train_items": summary.num_train_items,
            "items_first_seen_after_valid_cutoff": summary.items_first_seen_after_valid_cutoff,
            "history_lengths": lengths,
        },
        check_results=check_results,
    )


DATA_ASSETS = [raw_events, events, sequences, splits]
