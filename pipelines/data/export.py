"""The trainer's input (ARCHITECTURE.md, Contract 1): ``histories.parquet``, ``item_map.parquet`` and
``metadata.json`` under ``data/exports/<dataset>/``, written to a temporary folder and renamed into place,
so a reader sees the old export or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.data.splits import SplitSummary
from pipelines.data.sql import sql_text
from pipelines.paths import ProjectPaths

SCHEMA = pa.schema([
    ("user_id", pa.int32()),
    ("items", pa.list_(pa.int32())),
    ("timestamps", pa.list_(pa.int64())),
    ("split", pa.list_(pa.int8())),
])  # fmt: skip
ITEM_MAP_SCHEMA = pa.schema([("item_id", pa.int32()), ("item_raw", pa.string())])
METADATA_KEYS = [
    "num_users", "num_items", "split_mode", "cutoff_valid_ms", "cutoff_test_ms", "num_train_events",
    "num_valid_targets", "num_test_targets", "num_cold_valid_targets", "num_cold_test_targets",
]  # fmt: skip


def export_dir_for(dataset: str) -> Path:
    """Where the ``splits`` asset exports ``dataset`` (under ``RECMAMBA_HOME``); trainers read it from here."""
    return ProjectPaths.from_env().exports / dataset


class _ContentHash:
    """A hash of the exported values that does not depend on how rows are batched."""

    def __init__(self) -> None:
        names = ("user_id", "lengths", "items", "timestamps", "split", "item_map")
        self.parts = {name: hashlib.sha256() for name in names}

    def update(self, batch: pa.RecordBatch) -> None:
        self.parts["user_id"].update(batch["user_id"].to_numpy().tobytes())
        self.parts["lengths"].update(pc.list_value_length(batch["items"]).to_numpy().astype(np.int64).tobytes())
        for name in ("items", "timestamps", "split"):
            self.parts[name].update(batch[name].flatten().to_numpy().tobytes())

    def update_item_map(self, item_map: pa.Table) -> None:
        self.parts["item_map"].update("\n".join(item_map["item_raw"].to_pylist()).encode())

    def hexdigest(self, metadata: dict) -> str:
        total = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
        for name, part in self.parts.items():
            total.update(name.encode() + part.digest())
        return total.hexdigest()


def contract_metadata(dataset: str, summary: SplitSummary) -> dict:
    """``metadata.json`` without the fingerprint, keys exactly as in Contract 1."""
    values = dataclasses.asdict(summary)
    values["split_mode"] = summary.mode
    return {"dataset": dataset, **{key: values[key] for key in METADATA_KEYS}}


def write_export(con: duckdb.DuckDBPyConnection, dataset: str, summary: SplitSummary) -> tuple[Path, dict]:
    """Stream the ``splits`` table to Parquet; returns the export folder and its metadata."""
    target = export_dir_for(dataset)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        content = _ContentHash()
        reader = con.sql(sql_text("export_histories")).to_arrow_reader()
        with pq.ParquetWriter(tmp / "histories.parquet", SCHEMA) as writer:
            for batch in reader:
                batch = batch.cast(SCHEMA)
                content.update(batch)
                writer.write_batch(batch)
        item_map = con.sql(sql_text("export_item_map")).to_arrow_table().cast(ITEM_MAP_SCHEMA)
        pq.write_table(item_map, tmp / "item_map.parquet")
        content.update_item_map(item_map)
        metadata = contract_metadata(dataset, summary)
        metadata["fingerprint"] = content.hexdigest(metadata)
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, metadata


def _swap_into_place(tmp: Path, target: Path) -> None:
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
