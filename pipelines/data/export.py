"""The trainer's input (ARCHITECTURE.md, Contract 1): ``histories.parquet``, ``item_map.parquet`` and
``metadata.json``, written as an immutable version folder ``data/exports/.versions/<dataset>/<time>-<fingerprint>``;
the link ``data/exports/<dataset>`` is then swapped to it in one atomic rename. A reader sees the old export
or the new one, never half of one or none, and a run that trains from a version keeps reading that version
while later runs export new ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.data.splits import SplitSummary
from pipelines.data.sql import sql_text
from pipelines.paths import ProjectPaths, inside

SCHEMA = pa.schema([
    ("user_id", pa.int32()),
    ("items", pa.list_(pa.int32())),
    ("timestamps", pa.list_(pa.int64())),
    ("split", pa.list_(pa.int8())),
])  # fmt: skip
ITEM_MAP_SCHEMA = pa.schema([("item_id", pa.int32()), ("item_raw", pa.string())])
METADATA_KEYS = [
    "num_users", "num_items", "split_mode", "cutoff_valid_ms", "cutoff_test_ms", "target_protocol",
    "num_train_events", "num_valid_targets", "num_test_targets", "num_context_events", "num_cold_valid_targets",
    "num_cold_test_targets",
]  # fmt: skip
KEEP_VERSIONS = 3  # the current export and the two before it, for runs still training from them
TEMPORARY_PREFIX = ".tmp-"


def export_dir_for(dataset: str) -> Path:
    """Where trainers find ``dataset``'s current export: a link to its newest version (under ``RECMAMBA_HOME``)."""
    return ProjectPaths.from_env().export(dataset)


class _ContentHash:
    """A hash of the exported values that does not depend on how rows are batched."""

    def __init__(self) -> None:
        names = ("user_id", "lengths", "items", "timestamps", "split", "item_map")
        self.parts = {name: hashlib.sha256() for name in names}

    def update(self, batch: pa.RecordBatch) -> None:
        # the arrays' own buffers are hashed (no copy): the same bytes as ``tobytes()`` of these C-order arrays
        self.parts["user_id"].update(batch["user_id"].to_numpy())
        self.parts["lengths"].update(pc.list_value_length(batch["items"]).to_numpy().astype(np.int64))
        for name in ("items", "timestamps", "split"):
            self.parts[name].update(batch[name].flatten().to_numpy())

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
    """Stream the ``splits`` table to a new export version and make it current; returns the version and metadata.

    The caller holds the dataset's warehouse open for writing, so no other process exports this dataset now:
    temporary folders left by a killed run are removed here.
    """
    paths = ProjectPaths.from_env()
    versions = paths.export_versions(dataset)
    versions.mkdir(parents=True, exist_ok=True)
    versions = inside(paths.exports, versions)
    _remove_leftovers(paths, dataset, versions)
    tmp = versions / f"{TEMPORARY_PREFIX}{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        metadata = _write_files(con, dataset, summary, tmp)
        version = versions / f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{metadata['fingerprint'][:12]}"
        tmp.rename(version)
        _point_link(paths.export(dataset), version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _prune(versions, keep=version)
    return version, metadata


def _write_files(con: duckdb.DuckDBPyConnection, dataset: str, summary: SplitSummary, folder: Path) -> dict:
    content = _ContentHash()
    reader = con.sql(sql_text("export_histories")).to_arrow_reader()
    with pq.ParquetWriter(folder / "histories.parquet", SCHEMA) as writer:
        for batch in reader:
            batch = batch.cast(SCHEMA)
            content.update(batch)
            writer.write_batch(batch)
    item_map = con.sql(sql_text("export_item_map")).to_arrow_table().cast(ITEM_MAP_SCHEMA)
    pq.write_table(item_map, folder / "item_map.parquet")
    content.update_item_map(item_map)
    metadata = contract_metadata(dataset, summary)
    metadata["fingerprint"] = content.hexdigest(metadata)
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def _point_link(link: Path, version: Path) -> None:
    """Make ``link`` point at ``version`` with one rename (a symlink replaced atomically)."""
    if link.is_dir() and not link.is_symlink():  # an export from before versioning: keep it as a version
        link.rename(version.parent / f"00000000-legacy-{uuid.uuid4().hex}")  # sorts as the oldest
    staged = link.parent / f".{link.name}.link-{uuid.uuid4().hex}"
    staged.symlink_to(os.path.relpath(version, link.parent))
    os.replace(staged, link)


def _prune(versions: Path, keep: Path) -> None:
    """Remove all but the newest ``KEEP_VERSIONS`` versions (never ``keep``, the current one)."""
    finished = sorted((p for p in versions.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)
    for old in finished[KEEP_VERSIONS:]:
        if old != keep:
            shutil.rmtree(inside(versions, old))


def _remove_leftovers(paths: ProjectPaths, dataset: str, versions: Path) -> None:
    """Temporary folders and links of killed runs (also those of the layout before versioning)."""
    prefixes = tuple(f".{dataset}.{kind}-" for kind in ("tmp", "old", "link"))
    leftovers = [p for p in versions.iterdir() if p.name.startswith(TEMPORARY_PREFIX)]
    leftovers += [p for p in paths.exports.iterdir() if p.name.startswith(prefixes)]
    for path in leftovers:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(inside(paths.exports, path), ignore_errors=True)
