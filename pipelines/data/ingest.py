"""Landing folder -> ``raw_events``: stage and validate every file first, then replace the table in one
transaction, so a failed ingest leaves the previously materialized tables as they were.

Each run re-reads the whole landing folder: files that arrived since the last run are picked up, and the
same files give the same table (row ids follow file-name order, then line order).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.data.config import RawEventsConfig
from pipelines.data.sources import generic, kuairand, lfm1b, synthetic
from pipelines.data.sources.files import landing_files
from pipelines.data.sql import fetch_one, run_sql
from pipelines.paths import ProjectPaths


@dataclass(frozen=True)
class IngestSummary:
    dataset: str
    landing_dir: Path
    num_files: int
    staged_rows: int
    raw_events: int
    generated: bool  # synthetic files were (re)written this run


def landing_dir_for(config: RawEventsConfig, paths: ProjectPaths) -> Path:
    return Path(config.landing_dir).expanduser() if config.landing_dir else paths.landing / config.source


def default_glob(config: RawEventsConfig) -> str:
    if config.source == "synthetic":
        return synthetic.DEFAULT_GLOBS[config.synthetic_layout]
    if config.source == "kuairand":
        return kuairand.DEFAULT_GLOB
    if config.source == "lfm1b":
        return lfm1b.DEFAULT_GLOB
    return generic.DEFAULT_GLOBS[config.source]


def ingest(con: duckdb.DuckDBPyConnection, config: RawEventsConfig, paths: ProjectPaths) -> IngestSummary:
    folder = landing_dir_for(config, paths)
    generated = False
    if config.source == "synthetic":
        spec = synthetic.spec_for(
            config.synthetic_scale,
            config.seed,
            config.synthetic_users,
            config.synthetic_items,
            config.synthetic_min_events,
            config.synthetic_max_events,
        )
        generated = synthetic.ensure_landing(spec, config.synthetic_layout, folder)
    files = landing_files(folder, config.file_glob or default_glob(config))
    _stage(con, config, files)
    staged = int(fetch_one(con, "stage_count")[0])
    con.execute("BEGIN TRANSACTION")
    try:
        _normalize(con, config)
        run_sql(
            con,
            "dataset_info",
            dataset=config.dataset_name,
            source=config.source,
            landing_dir=str(folder),
            num_files=len(files),
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    rows = int(fetch_one(con, "count_raw_events")[0])
    return IngestSummary(config.dataset_name, folder, len(files), staged, rows, generated)


def _layout(config: RawEventsConfig) -> str:
    return config.synthetic_layout if config.source == "synthetic" else config.source


def _stage(con: duckdb.DuckDBPyConnection, config: RawEventsConfig, files: list[Path]) -> None:
    layout = _layout(config)
    mapping = {"user_raw": config.csv_user_column, "item_raw": config.csv_item_column, "ts_raw": config.csv_time_column}
    if layout == "kuairand":
        kuairand.stage(con, files)
    elif layout == "lfm1b":
        lfm1b.stage(con, files, config.lfm1b_item)
    elif layout == "movielens":
        generic.stage_movielens(con, files)
    elif layout == "csv":
        generic.stage_csv_mapped(con, files, mapping, config.csv_delimiter)
    else:
        generic.stage_parquet(con, files, mapping)


def _normalize(con: duckdb.DuckDBPyConnection, config: RawEventsConfig) -> None:
    layout = _layout(config)
    if layout == "kuairand":
        kuairand.normalize(con, config.kuairand_interactions)
    elif layout == "lfm1b":
        lfm1b.normalize(con)
    elif layout == "movielens":
        generic.normalize(con, "s")
    else:
        generic.normalize(con, config.time_unit)
