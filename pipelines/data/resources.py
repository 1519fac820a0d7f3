"""The DuckDB warehouse resource (key ``duckdb``): one file under ``RECMAMBA_HOME``, with a memory limit
so large ingests spill to disk instead of growing without bound.
"""

from __future__ import annotations

from pathlib import Path

from dagster_duckdb import DuckDBResource

from pipelines.paths import ProjectPaths

MEMORY_LIMIT = "4GB"
POOL = "duckdb_warehouse"  # one writer at a time: set its limit with `dagster instance concurrency set`


def warehouse_resource(database: Path | None = None, memory_limit: str = MEMORY_LIMIT) -> DuckDBResource:
    path = database or ProjectPaths.from_env().warehouse
    return DuckDBResource(database=str(path), connection_config={"memory_limit": memory_limit})
