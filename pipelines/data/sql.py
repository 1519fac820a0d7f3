"""Run the named SQL files of ``sql/`` with bound parameters, so no value is ever formatted into SQL."""

from __future__ import annotations

from functools import cache
from typing import Any

import duckdb

from pipelines.paths import SQL_DIR


@cache
def sql_text(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text()


def run_sql(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> duckdb.DuckDBPyConnection:
    """Execute ``sql/<name>.sql`` with ``$name`` parameters bound from keyword arguments."""
    return con.execute(sql_text(name), params or None)


def fetch_one(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> tuple:
    """The single result row of ``sql/<name>.sql``."""
    row = next(iter(run_sql(con, name, **params).fetchall()), None)
    assert row is not None, f"sql/{name}.sql returned no row"
    return row
