"""The DuckDB warehouse resource (key ``warehouse``): one database file per dataset under ``RECMAMBA_HOME``.

A file per dataset keeps runs on different datasets apart (each reads and writes only its own tables).
Memory limit, threads and spill folder are resource settings, so a small machine can lower them and a big
ingest spills to disk instead of growing without bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb
import psutil
from pydantic import Field

from pipelines.paths import ProjectPaths

POOL = "duckdb_warehouse"  # one writer at a time: set its limit with `dagster instance concurrency set`
MEMORY_SHARE = 0.5  # of the machine's memory, when memory_limit is not set
LOCK_RETRY_SECONDS = 0.5


def default_memory_limit() -> str:
    return f"{int(psutil.virtual_memory().total * MEMORY_SHARE) >> 20}MB"


class Warehouse(dg.ConfigurableResource):
    """DuckDB files ``data/warehouse/<dataset>.duckdb``; a connection waits while another process writes one."""

    memory_limit: str = Field("", description="DuckDB memory_limit, e.g. '4GB'; empty: half of the machine's memory.")
    threads: int = Field(0, description="DuckDB worker threads; 0: one per core.")
    temp_directory: str = Field("", description="Where DuckDB spills; empty: RECMAMBA_HOME/data/duckdb_tmp.")
    lock_timeout_seconds: float = Field(
        600.0, description="How long a step waits for another process to release the dataset's warehouse file."
    )

    def settings(self) -> dict[str, str | int]:
        """The DuckDB configuration every connection gets."""
        paths = ProjectPaths.from_env()
        settings: dict[str, str | int] = {
            "memory_limit": self.memory_limit or default_memory_limit(),
            "temp_directory": self.temp_directory or str(paths.duckdb_temp),
        }
        if self.threads > 0:
            settings["threads"] = self.threads
        return settings

    @contextmanager
    def connect(self, dataset: str, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to ``dataset``'s warehouse, closed whatever happens in the block."""
        path = ProjectPaths.from_env().warehouse(dataset)
        path.parent.mkdir(parents=True, exist_ok=True)
        con = self._open(str(path), read_only)
        try:
            yield con
        finally:
            con.close()

    def _open(self, database: str, read_only: bool) -> duckdb.DuckDBPyConnection:
        """DuckDB lets one process write a file; another process's step waits here for its turn."""
        deadline = time.monotonic() + self.lock_timeout_seconds
        while True:
            try:
                return duckdb.connect(database, read_only=read_only, config=self.settings())
            except duckdb.IOException as error:
                if "lock" not in str(error).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(LOCK_RETRY_SECONDS)
