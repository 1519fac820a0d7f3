"""Histories out of core: the split export as memory-mapped flat arrays, so that training on a billion-event
export holds only the current batch in RAM.

``open_split(export_dir, store_dir)`` converts ``histories.parquet`` once per export (streamed a Parquet
batch of users at a time, memory bounded by that batch) into raw little-endian arrays under
``store_dir/<fingerprint>/``, then maps them: the same flat layout as ``SplitData`` (a user's history is
``items[offsets[u]:offsets[u + 1]]``), plus the training events alone and their item counts, which the
trainer would otherwise derive with whole-export temporaries. Pages are read from the file as batches
touch them and are the kernel's to drop again. A store is written to a temporary folder and renamed into
place when complete, so a killed conversion leaves nothing a later run would read. The folder's name
carries the layout's version (``STORE_LAYOUT``), so a store of an older layout is converted again, not read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recmodels.data.split_data import CONTEXT, HISTORIES_FILE, METADATA_FILE, TRAIN, SplitData

USERS_PER_READ = 4096  # users converted per Parquet read: bounds the conversion's memory
# name -> dtype of each mapped array; offsets have one more entry than users.
ARRAYS = {
    "user_ids": np.int32,
    "items": np.int32,
    "timestamps": np.int64,
    "split": np.int8,
    "offsets": np.int64,
    "train_items": np.int32,
    "train_offsets": np.int64,
    "train_timestamps": np.int64,
    "train_item_counts": np.int64,
}
COMPLETE_FILE = "store.json"
STORE_LAYOUT = 2  # 2: with train_timestamps


@dataclass(frozen=True)
class StoredSplitData(SplitData):
    """``SplitData`` whose arrays are memory maps, with the training events precomputed."""

    train_items: np.ndarray  # (E_train,) int32
    train_offsets: np.ndarray  # (U + 1,) int64
    train_times: np.ndarray  # (E_train,) int64 ms, aligned with train_items
    item_counts: np.ndarray  # (num_items + 1,) int64

    def train_histories(self) -> tuple[np.ndarray, np.ndarray]:
        return self.train_items, self.train_offsets

    def train_timestamps(self) -> np.ndarray:
        return self.train_times

    def train_item_counts(self) -> np.ndarray:
        return self.item_counts


def load_split(export_dir: str | os.PathLike, store_dir: str | os.PathLike | None = None) -> SplitData:
    """The export a training reads: memory-mapped from ``store_dir`` when given, else loaded into RAM."""
    return open_split(export_dir, store_dir) if store_dir is not None else SplitData.load(export_dir)


def open_split(export_dir: str | os.PathLike, store_dir: str | os.PathLike) -> StoredSplitData:
    """The export's histories, memory-mapped from ``store_dir`` (converted on first use of this export)."""
    export_dir, store_dir = Path(export_dir), Path(store_dir)
    metadata = json.loads((export_dir / METADATA_FILE).read_text())
    folder = store_dir / _store_name(metadata)
    if not (folder / COMPLETE_FILE).is_file():
        _convert(export_dir, metadata, folder)
    arrays = {name: _map(folder / f"{name}.bin", dtype) for name, dtype in ARRAYS.items()}
    return StoredSplitData(
        user_ids=arrays["user_ids"],
        items=arrays["items"],
        timestamps=arrays["timestamps"],
        split=arrays["split"],
        offsets=arrays["offsets"],
        metadata=metadata,
        train_items=arrays["train_items"],
        train_offsets=arrays["train_offsets"],
        train_times=arrays["train_timestamps"],
        item_counts=arrays["train_item_counts"],
    )


def _map(path: Path, dtype: type) -> np.ndarray:
    """A read-only memory map of a raw array file (an empty file cannot be mapped: an empty array)."""
    return np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)


def _store_name(metadata: dict) -> str:
    fingerprint = str(metadata.get("fingerprint", ""))
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in fingerprint)[:80]
    if not safe:
        raise ValueError("the export's metadata.json has no fingerprint: the history store is keyed by it")
    return f"{safe}-layout{STORE_LAYOUT}"


class _Writer:
    """Appends numpy arrays to one raw file per array name."""

    def __init__(self, folder: Path) -> None:
        self.files = {name: (folder / f"{name}.bin").open("wb") for name in ARRAYS}

    def write(self, name: str, values: np.ndarray) -> None:
        self.files[name].write(np.ascontiguousarray(values, dtype=ARRAYS[name]).tobytes())

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


def _convert(export_dir: Path, metadata: dict, folder: Path) -> None:
    """Stream ``histories.parquet`` into the raw arrays of ``folder``, checking each batch as it goes."""
    path = export_dir / HISTORIES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {HISTORIES_FILE} in {export_dir}: expected a Contract-1 split export")
    num_items = int(metadata["num_items"])
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        writer = _Writer(staging)
        counts = np.zeros(num_items + 1, dtype=np.int64)
        events, train_events, first_user = 0, 0, 0
        writer.write("offsets", [0])
        writer.write("train_offsets", [0])
        source = pq.ParquetFile(path)
        for batch in source.iter_batches(USERS_PER_READ, columns=["user_id", "items", "timestamps", "split"]):
            columns = _flat_columns(batch, path, first_user)
            items, timestamps, split, offsets = columns
            _check(items, split, num_items, path, first_user, offsets)
            is_train = split == TRAIN
            seen_train = np.concatenate([[0], np.cumsum(is_train)])
            train_lengths = seen_train[offsets[1:]] - seen_train[offsets[:-1]]
            writer.write("user_ids", batch.column("user_id").to_numpy(zero_copy_only=False))
            writer.write("items", items)
            writer.write("timestamps", timestamps)
            writer.write("split", split)
            writer.write("offsets", events + offsets[1:])
            writer.write("train_items", items[is_train])
            writer.write("train_timestamps", timestamps[is_train])
            writer.write("train_offsets", train_events + np.cumsum(train_lengths))
            counts += np.bincount(items[is_train], minlength=num_items + 1)
            events, train_events = events + len(items), train_events + int(is_train.sum())
            first_user += batch.num_rows
        writer.write("train_item_counts", counts)
        writer.close()
        (staging / COMPLETE_FILE).write_text(json.dumps({"users": first_user, "events": events}))
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _flat_columns(batch: pa.RecordBatch, path: Path, first_user: int) -> tuple[np.ndarray, ...]:
    """(items, timestamps, split, offsets) of one batch of users, offsets starting at 0."""
    flat, offsets = {}, None
    for name in ("items", "timestamps", "split"):
        column = batch.column(name)
        if column.null_count:
            row = first_user + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise ValueError(f"{path}: row {row}, column {name!r}: null list")
        these = column.offsets.to_numpy().astype(np.int64)
        flat[name] = column.values.to_numpy(zero_copy_only=False)[these[0] : these[-1]]
        these = these - these[0]
        if offsets is not None and not np.array_equal(offsets, these):
            row = first_user + int(np.flatnonzero(offsets != these)[0]) - 1
            raise ValueError(f"{path}: row {row}: columns items and {name} have different list lengths")
        offsets = these
    return flat["items"], flat["timestamps"], flat["split"], offsets


def _check(items: np.ndarray, split: np.ndarray, num_items: int, path: Path, first_user: int, offsets) -> None:
    """Item ids in 1..num_items and split codes 0..3, else an error naming the row (user) and column."""
    for name, values, low, high in (("items", items, 1, num_items), ("split", split, TRAIN, CONTEXT)):
        bad = np.flatnonzero((values < low) | (values > high))
        if len(bad):
            row = first_user + int(np.searchsorted(offsets, bad[0], side="right")) - 1
            raise ValueError(
                f"{path}: row {row}, column {name!r}: value {values[bad[0]]} outside {low}..{high}"
                + (f" (num_items={num_items})" if name == "items" else "")
            )
