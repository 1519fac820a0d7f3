"""Landing folder -> ``raw_events``: stage and validate every file first, then replace the table in one
transaction, so a failed ingest leaves the previously materialized tables as they were.

Each run re-reads the whole landing folder: files that arrived since the last run are picked up, and the
same files give the same table (row ids follow file-name order, then line order). The events the service
acknowledged for the dataset (``landing/served/<dataset>``, ``sources/served.py``) are appended after them. A file that changes
while it is read, or a timestamp outside the plausible range (usually a wrong time unit), fails the run
before anything is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.data.config import RawEventsConfig
from pipelines.data.sources import generic, kuairand, lfm1b, recbole, synthetic
from pipelines.data.sources.served import append_served, served_files
from pipelines.data.sources.files import (
    IngestError,
    check_unchanged,
    file_states,
    landing_files,
    resolve_landing_dir,
)
from pipelines.data.sources.staging import Staged, count_staged, raise_on_implausible_timestamps
from pipelines.data.sources.timestamps import plausible_window
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
    served_events: int  # rows of the service's day files (landing/served/<dataset>) among raw_events


def landing_dir_for(config: RawEventsConfig, paths: ProjectPaths) -> Path:
    """The configured folder (relative to the landing root) or the source's own; never outside the root."""
    return resolve_landing_dir(paths.landing, config.landing_dir, paths.landing / config.source)


def default_globs(config: RawEventsConfig) -> list[str]:
    if config.source == "synthetic":
        return synthetic.DEFAULT_GLOBS[config.synthetic_layout]
    if config.source == "kuairand":
        return kuairand.DEFAULT_GLOBS
    if config.source == "lfm1b":
        return lfm1b.DEFAULT_GLOBS
    if config.source == "recbole":
        return recbole.DEFAULT_GLOBS
    return generic.DEFAULT_GLOBS[config.source]


def ingest(con: duckdb.DuckDBPyConnection, config: RawEventsConfig, paths: ProjectPaths) -> IngestSummary:
    folder = landing_dir_for(config, paths)
    generated = _write_synthetic(config, folder)
    files = landing_files(folder, [config.file_glob] if config.file_glob else default_globs(config), paths.landing)
    before = file_states(files)
    try:
        staged = stage_files(con, config, files)
    except IngestError:
        check_unchanged(before)  # a file being written explains a cut-off row better than the row does
        raise
    check_unchanged(before)
    window = plausible_window(config.min_timestamp, config.max_timestamp)
    raise_on_implausible_timestamps(con, staged, window)
    staged_rows = count_staged(con)
    con.execute("BEGIN TRANSACTION")
    try:
        normalize_staged(con, config, staged)
        served_rows = append_served(con, served_files(paths.served_events(config.dataset_name)), window)
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
    return IngestSummary(config.dataset_name, folder, len(files), staged_rows, rows, generated, served_rows)


def _write_synthetic(config: RawEventsConfig, folder: Path) -> bool:
    if config.source != "synthetic":
        return False
    spec = synthetic.spec_for(
        config.synthetic_scale,
        config.seed,
        config.synthetic_users,
        config.synthetic_items,
        config.synthetic_min_events,
        config.synthetic_max_events,
    )
    return synthetic.ensure_landing(spec, config.synthetic_layout, folder)


def _layout(config: RawEventsConfig) -> str:
    return config.synthetic_layout if config.source == "synthetic" else config.source


def _mapping(config: RawEventsConfig) -> generic.ColumnMapping:
    return generic.ColumnMapping(
        config.csv_user_column,
        config.csv_item_column,
        config.csv_time_column,
        config.filter_column,
        tuple(config.filter_values),
    )


def stage_files(con: duckdb.DuckDBPyConnection, config: RawEventsConfig, files: list[Path]) -> Staged:
    layout = _layout(config)
    if layout == "kuairand":
        return kuairand.stage(con, files)
    if layout == "lfm1b":
        return lfm1b.stage(con, files, config.lfm1b_item)
    if layout == "movielens":
        return generic.stage_movielens(con, files)
    if layout == "recbole":
        return recbole.stage(con, files)
    if layout == "csv":
        return generic.stage_csv_mapped(
            con,
            files,
            _mapping(config),
            delimiter=config.csv_delimiter,
            header=config.csv_header,
            names=config.csv_columns,
            time_unit=config.time_unit,
        )
    return generic.stage_parquet(con, files, _mapping(config), config.time_unit)


def normalize_staged(con: duckdb.DuckDBPyConnection, config: RawEventsConfig, staged: Staged) -> None:
    layout = _layout(config)
    if layout == "kuairand":
        kuairand.normalize(con, config.kuairand_interactions)
    elif layout in {"csv", "parquet"}:
        generic.normalize_mapped(con, staged, _mapping(config))
    else:
        generic.normalize(con, staged.time_unit)
