"""Builds a served model's folder: encode every user's whole history into a fresh state store.

Histories are encoded in batches of similar length (sorted), chunk by chunk, so a batch never pads a short
history to a lifelong one and memory stays bounded by ``batch_tokens``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recmodels.models import SequentialRecommender
from recmodels.serving.bundle import MODEL_FOLDER, STORE_FILE, Catalogue
from recmodels.serving.engines import engine_for
from recmodels.serving.store import NO_TIMESTAMP, StateStore, UserRow

BATCH_TOKENS = 1 << 18  # padded events per encoding batch


@dataclass(frozen=True)
class BuildSummary:
    users: int
    events: int
    state_bytes_per_user: int  # state + hidden vector: fixed for a model, whatever the history length
    seen_items_per_user: float  # mean distinct items seen (rows of the store's seen table)


def length_batches(lengths: np.ndarray, batch_tokens: int = BATCH_TOKENS) -> list[np.ndarray]:
    """User indices in batches of similar length whose padded size stays under ``batch_tokens``."""
    order = np.argsort(lengths, kind="stable")
    batches, current = [], []
    for index in order:
        if current and (len(current) + 1) * max(int(lengths[index]), 1) > batch_tokens:
            batches.append(np.array(current))
            current = []
        current.append(index)
    if current:
        batches.append(np.array(current))
    return batches


def user_row(user: str, state: np.ndarray, hidden: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> UserRow:
    if not len(items):
        return UserRow(user, state, hidden, NO_TIMESTAMP, np.zeros(0, np.int32), 0)
    last_ts = int(timestamps[-1])
    last_items = np.unique(items[timestamps == last_ts]).astype(np.int32)
    return UserRow(user, state, hidden, last_ts, last_items, len(items))


def build_folder(
    folder: Path,
    model: SequentialRecommender,
    model_files: Path,
    catalogue: Catalogue,
    users: Sequence[str],
    histories: Sequence[np.ndarray],
    timestamps: Sequence[np.ndarray],
    meta: dict[str, str],
) -> BuildSummary:
    """Write ``folder`` (which must not exist): the model files, the catalogue, every user's state row.

    ``histories`` hold the model's dense item ids in time order (0 = an item the model does not know,
    dropped), ``timestamps`` their milliseconds.
    """
    folder.mkdir(parents=True)
    shutil.copytree(model_files, folder / MODEL_FOLDER)
    catalogue.write(folder)
    engine = engine_for(model)
    store = StateStore.create(folder / STORE_FILE, engine.state_dtype, engine.state_width, meta)
    kept = [
        (np.asarray(h)[np.asarray(h) != 0], np.asarray(t)[np.asarray(h) != 0])
        for h, t in zip(histories, timestamps, strict=True)
    ]
    lengths = np.array([len(h) for h, _ in kept], dtype=np.int64)
    seen_items = 0
    try:
        for batch in length_batches(lengths):
            states, hidden = engine.encode([kept[i][0] for i in batch], [kept[i][1] for i in batch])
            rows = [user_row(users[i], states[b], hidden[b], *kept[i]) for b, i in enumerate(batch)]
            seen = [np.unique(kept[i][0]).tolist() for i in batch]
            with store.write():
                store.put_many(rows)  # gives each row its slot
                store.add_seen((row.slot, item) for row, items in zip(rows, seen, strict=True) for item in items)
            seen_items += sum(len(items) for items in seen)
    finally:
        store.close()
    state_bytes = engine.state_width * engine.state_dtype.itemsize + engine.hidden_width * 4
    return BuildSummary(len(users), int(lengths.sum()), state_bytes, seen_items / max(len(users), 1))
