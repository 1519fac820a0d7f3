"""Data layer: raw interaction logs -> DuckDB tables -> the trainer's Parquet export (Contract 1)."""

from pipelines.data.export import export_dir_for

__all__ = ["export_dir_for"]
