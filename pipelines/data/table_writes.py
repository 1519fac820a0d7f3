"""Who last wrote each warehouse table, so that a step never builds on a table that another run rewrote
after the materialization the step works from (two runs on one dataset at once fail clearly, never mix).
"""

from __future__ import annotations

import dagster as dg
import duckdb

from pipelines.data.sql import run_sql
from pipelines.lineage import Upstream


def record_write(con: duckdb.DuckDBPyConnection, asset: str, run_id: str) -> None:
    run_sql(con, "table_writes")
    run_sql(con, "record_table_write", asset=asset, run_id=run_id)


def require_written_by(con: duckdb.DuckDBPyConnection, upstream: Upstream, dataset: str) -> None:
    """A Failure unless ``upstream``'s tables in this warehouse are the ones its materialization wrote."""
    run_sql(con, "table_writes")
    row = next(iter(run_sql(con, "table_writer", asset=upstream.asset).fetchall()), None)
    writer = row[0] if row else None
    if writer == upstream.run_id:
        return
    raise dg.Failure(
        f"The {upstream.asset} table of dataset {dataset!r} was rewritten by run {writer} after run "
        f"{upstream.run_id} materialized it: two runs on one dataset overlapped. Run them one after the other "
        f"(re-execute this run once the other has finished)."
    )
