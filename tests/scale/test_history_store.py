"""The out-of-core reader yields exactly the in-memory batches, and refuses bad exports naming row and column."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from recmodels import build_model
from recmodels.data.history_store import open_split
from recmodels.data.split_data import SplitData, write_split_export
from recmodels.ops import use_backend
from recmodels.train import main
from recmodels.training.config import TrainConfig
from recmodels.training.loop import fit
from recmodels.training.windows import WindowIndex


def random_export(tmp_path, num_users=40, num_items=50, seed=0):
    rng = np.random.default_rng(seed)
    histories, splits = [], []
    for user in range(num_users):
        length = 0 if user == 3 else 1 if user == 4 else int(rng.integers(2, 70))
        histories.append(rng.integers(1, num_items + 1, length).tolist())
        splits.append(sorted(rng.choice([0, 0, 0, 1, 2], length).tolist()))
    return write_split_export(tmp_path / "export", histories, splits, num_items=num_items)


def test_stored_split_equals_the_loaded_one(tmp_path, monkeypatch):
    monkeypatch.setattr("recmodels.data.history_store.USERS_PER_READ", 7)  # several Parquet reads
    export = random_export(tmp_path)
    loaded, stored = SplitData.load(export), open_split(export, tmp_path / "store")
    for name in ("user_ids", "items", "timestamps", "split", "offsets"):
        assert np.array_equal(getattr(stored, name), getattr(loaded, name)), name
    for ours, theirs in zip(stored.train_histories(), loaded.train_histories(), strict=True):
        assert np.array_equal(ours, theirs)
    assert np.array_equal(stored.train_timestamps(), loaded.train_timestamps())
    assert np.array_equal(stored.train_item_counts(), loaded.train_item_counts())
    assert isinstance(stored.items, np.memmap)


@pytest.mark.parametrize(("max_len", "batch_size", "timestamps"), [(4, 3, False), (16, 5, True), (128, 8, False)])
def test_out_of_core_batches_equal_in_memory_batches_for_the_same_seed(tmp_path, max_len, batch_size, timestamps):
    export = random_export(tmp_path)
    in_memory = WindowIndex.of(SplitData.load(export), max_len, timestamps)
    index = WindowIndex.of(open_split(export, tmp_path / "store"), max_len, timestamps)
    assert len(index) == len(in_memory) and index.num_targets == in_memory.num_targets
    expected = list(in_memory.batches(batch_size, np.random.default_rng([3, 1])))
    got = list(index.batches(batch_size, np.random.default_rng([3, 1])))
    assert len(got) == len(expected)
    for batch, want in zip(got, expected, strict=True):
        assert torch.equal(batch.inputs, want.inputs) and torch.equal(batch.targets, want.targets)
        assert (batch.timestamps is None) == (not timestamps)
        assert not timestamps or torch.equal(batch.timestamps, want.timestamps)


def test_training_from_the_store_equals_training_in_memory(tmp_path):
    export = random_export(tmp_path, num_users=12)
    config = TrainConfig(epochs=2, batch_size=4, patience=0, seed=0, eval_max_targets=None)
    results = []
    for data in (SplitData.load(export), open_split(export, tmp_path / "store")):
        torch.manual_seed(0)
        model = build_model("gru4rec", data.num_items, d_model=8, max_len=16, dropout=0.0)
        with use_backend("chunked"):
            results.append(fit(model, data, config))
    assert results[0].test.overall == results[1].test.overall
    assert [e.train_loss for e in results[0].epochs] == [e.train_loss for e in results[1].epochs]


def test_a_bad_item_is_reported_with_row_and_column_and_no_store_is_left(tmp_path):
    export = write_split_export(tmp_path / "export", [[1, 2], [3, 4, 9]], [[0, 0], [0, 0, 1]], num_items=9)
    table = pq.read_table(export / "histories.parquet")
    items = pa.array([[1, 2], [3, 4, 10]], pa.list_(pa.int32()))
    pq.write_table(table.set_column(1, "items", items), export / "histories.parquet")
    with pytest.raises(ValueError, match=r"row 1, column 'items': value 10 outside 1\.\.9"):
        open_split(export, tmp_path / "store")
    assert not list((tmp_path / "store").iterdir())


def test_command_line_trains_from_a_history_store(tmp_path, capsys):
    export = random_export(tmp_path, num_users=8)
    argv = ["gru4rec", "--export", str(export), "--history_store", str(tmp_path / "store")]
    with use_backend("chunked"):
        code = main([*argv, "--model.d_model", "8", "--model.max_len", "16", "--train.epochs", "1"])
    assert code == 0 and json.loads(capsys.readouterr().out)["test"]["num_targets"] > 0
    assert list((tmp_path / "store").glob("*/items.bin"))
