"""Reads the split export (Contract 1) into flat numpy arrays (training windows: ``recmodels.training.windows``).

A list column in Parquet is a flat values array plus offsets; we keep exactly that layout (no pandas,
no per-user Python lists), so a user's history is ``items[offsets[u]:offsets[u + 1]]``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TRAIN, VALID, TEST = 0, 1, 2
CONTEXT = 3  # after the validation cut-off but not chosen as a target: history only, never trained on or ranked
SPLIT_CODES = {"train": TRAIN, "valid": VALID, "test": TEST, "context": CONTEXT}
HISTORIES_FILE = "histories.parquet"
METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class SplitData:
    """All users' event histories, concatenated in user order; user row r spans offsets[r]:offsets[r + 1]."""

    user_ids: np.ndarray  # (U,) int32
    items: np.ndarray  # (E,) int32, item ids >= 1
    timestamps: np.ndarray  # (E,) int64, ms since the epoch
    split: np.ndarray  # (E,) int8: 0 train, 1 validation target, 2 test target, 3 context
    offsets: np.ndarray  # (U + 1,) int64
    metadata: dict

    @classmethod
    def load(cls, export_dir: str | os.PathLike) -> SplitData:
        export_dir = Path(export_dir)
        path = export_dir / HISTORIES_FILE
        if not path.exists():
            raise FileNotFoundError(f"no {HISTORIES_FILE} in {export_dir}: expected a Contract-1 split export")
        table = pq.read_table(path, columns=["user_id", "items", "timestamps", "split"])
        metadata = json.loads((export_dir / METADATA_FILE).read_text())
        items, offsets = _flat_list_column(table, "items", path)
        timestamps, timestamp_offsets = _flat_list_column(table, "timestamps", path)
        split, split_offsets = _flat_list_column(table, "split", path)
        if not (np.array_equal(offsets, timestamp_offsets) and np.array_equal(offsets, split_offsets)):
            raise ValueError(f"{path}: columns items, timestamps and split have different list lengths per user")
        data = cls(
            user_ids=table.column("user_id").to_numpy().astype(np.int32, copy=False),
            items=items.astype(np.int32, copy=False),
            timestamps=timestamps.astype(np.int64, copy=False),
            split=split.astype(np.int8, copy=False),
            offsets=offsets.astype(np.int64, copy=False),
            metadata=metadata,
        )
        data.validate(path)
        return data

    def validate(self, where: str | os.PathLike = "split data") -> None:
        if self.items.size and (self.items.min() < 1 or self.items.max() > self.num_items):
            raise ValueError(
                f"{where}: item ids must lie in 1..num_items={self.num_items}, "
                f"found {self.items.min()}..{self.items.max()}"
            )
        unknown = self.split[~np.isin(self.split, (TRAIN, VALID, TEST, CONTEXT))]
        if unknown.size:
            raise ValueError(
                f"{where}: split values must be 0, 1, 2 or 3 (train, valid, test, context), found {unknown[0]}"
            )

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return int(self.metadata["num_items"])

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def history(self, row: int) -> np.ndarray:
        return self.items[self.offsets[row] : self.offsets[row + 1]]

    def train_histories(self) -> tuple[np.ndarray, np.ndarray]:
        """(training events' items, per-user offsets into them): the histories training windows are cut from."""
        is_train = self.split == TRAIN
        seen_train = np.concatenate([[0], np.cumsum(is_train)])
        return self.items[is_train], seen_train[self.offsets]

    def train_timestamps(self) -> np.ndarray:
        """The training events' timestamps (ms), aligned with ``train_histories()``'s items."""
        return self.timestamps[self.split == TRAIN]

    def train_item_counts(self) -> np.ndarray:
        """(num_items + 1,) how often each item occurs among training events (for log-Q correction)."""
        return np.bincount(self.items[self.split == TRAIN], minlength=self.num_items + 1)


def target_protocol(metadata: dict) -> str:
    """Which events of the evaluation windows are targets, in words: ``sample_per_user(10, seed 0)``,
    ``first_per_user``, ``last_per_user`` or ``all`` (``valid ..., test ...`` if the windows differ).

    Every result states it (asset metadata, MLflow params): the choice changes metrics and model rankings.
    An export without ``target_protocol`` predates it and labelled every event after the cut-off (leave-one-out:
    each user's last two), so it reads as ``all`` (``last_per_user``).
    """
    protocol = metadata.get("target_protocol")
    if protocol is None:
        return "last_per_user" if metadata.get("split_mode") == "leave_one_out" else "all"

    def rule(name: str) -> str:
        if name == "sample_per_user":
            return f"sample_per_user({protocol['targets_per_user']}, seed {protocol['targets_seed']})"
        return name

    valid, test = rule(protocol["valid"]), rule(protocol["test"])
    return valid if valid == test else f"valid {valid}, test {test}"


def _flat_list_column(table: pa.Table, name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A list column as (flat values, offsets) without copying into Python objects."""
    column = table.column(name).combine_chunks()
    if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
        raise ValueError(f"{path}: column {name!r} must be a list column, found {column.type}")
    if column.null_count:
        raise ValueError(f"{path}: column {name!r} has {column.null_count} null lists")
    offsets = column.offsets.to_numpy().astype(np.int64)
    values = column.values.to_numpy(zero_copy_only=False)
    start = offsets[0]  # a sliced array's offsets need not start at 0
    return values[start : offsets[-1]], offsets - start


def write_split_export(
    export_dir: str | os.PathLike,
    histories: Sequence[Sequence[int]],
    splits: Sequence[Sequence[int]],
    timestamps: Sequence[Sequence[int]] | None = None,
    num_items: int | None = None,
    dataset: str = "handmade",
    split_mode: str = "global_time",
) -> Path:
    """Write a Contract-1 export from Python lists (tests, examples); atomically, like the data layer."""
    export_dir = Path(export_dir)
    if timestamps is None:
        timestamps = [list(range(len(history))) for history in histories]
    num_items = num_items or max((max(h) for h in histories if len(h)), default=1)
    table = pa.table(
        {
            "user_id": pa.array(range(1, len(histories) + 1), pa.int32()),
            "items": pa.array([list(h) for h in histories], pa.list_(pa.int32())),
            "timestamps": pa.array([list(t) for t in timestamps], pa.list_(pa.int64())),
            "split": pa.array([list(s) for s in splits], pa.list_(pa.int8())),
        }
    )
    flat_split = np.concatenate([np.asarray(s, dtype=np.int8) for s in splits]) if splits else np.zeros(0)
    metadata = {
        "dataset": dataset,
        "num_users": len(histories),
        "num_items": int(num_items),
        "split_mode": split_mode,
        "cutoff_valid_ms": None,
        "cutoff_test_ms": None,
        "num_train_events": int((flat_split == TRAIN).sum()),
        "num_valid_targets": int((flat_split == VALID).sum()),
        "num_test_targets": int((flat_split == TEST).sum()),
        "num_context_events": int((flat_split == CONTEXT).sum()),
        "num_cold_valid_targets": 0,
        "num_cold_test_targets": 0,
        "target_protocol": {"valid": "all", "test": "all", "targets_per_user": None, "targets_seed": None},
        "fingerprint": f"{dataset}-{len(histories)}-{len(flat_split)}",
    }
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=export_dir.parent))
    pq.write_table(table, staging / HISTORIES_FILE)
    (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    if export_dir.exists():
        shutil.rmtree(export_dir)
    os.replace(staging, export_dir)
    return export_dir
