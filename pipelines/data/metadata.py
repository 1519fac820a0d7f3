"""Materialization metadata shared by the data assets."""

from __future__ import annotations

import dagster as dg
import duckdb

from pipelines.data.sql import fetch_one

PERCENTILES = ["min", "p10", "p25", "p50", "p75", "p90", "p99", "max"]


def history_length_table(con: duckdb.DuckDBPyConnection) -> dg.MetadataValue:
    """History-length percentiles over users as a markdown table."""
    (values,) = fetch_one(con, "history_length_percentiles")
    values = values or [0] * len(PERCENTILES)
    header = "| " + " | ".join(PERCENTILES) + " |"
    rule = "|" + "---|" * len(PERCENTILES)
    row = "| " + " | ".join(str(v) for v in values) + " |"
    return dg.MetadataValue.md("\n".join([header, rule, row]))
