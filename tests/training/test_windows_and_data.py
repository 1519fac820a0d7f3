"""Reading the Contract-1 export and cutting training windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recmodels.data.split_data import SplitData, write_split_export
from recmodels.training.windows import WindowIndex


def test_export_round_trips_into_flat_arrays(tmp_path):
    export = write_split_export(tmp_path / "e", [[1, 2, 3], [4], [2, 5]], [[0, 0, 1], [0], [0, 2]], num_items=6)
    data = SplitData.load(export)
    assert data.items.tolist() == [1, 2, 3, 4, 2, 5]
    assert data.offsets.tolist() == [0, 3, 4, 6]
    assert data.split.tolist() == [0, 0, 1, 0, 0, 2]
    assert data.user_ids.tolist() == [1, 2, 3]
    assert data.num_items == 6 and data.metadata["num_valid_targets"] == 1
    assert data.history(2).tolist() == [2, 5]


def test_out_of_range_items_are_reported(tmp_path):
    export = write_split_export(tmp_path / "e", [[1, 9]], [[0, 0]], num_items=9)
    (export / "metadata.json").write_text(
        (export / "metadata.json").read_text().replace('"num_items": 9', '"num_items": 5')
    )
    with pytest.raises(ValueError, match=r"1\.\.num_items=5"):
        SplitData.load(export)


def test_windows_cover_every_training_pair_once_newest_window_full(tmp_path):
    # user 1: train events 1..7 then a validation target; user 2: two train events
    export = write_split_export(tmp_path / "e", [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10]], [[0] * 7 + [1], [0, 0]])
    windows = WindowIndex.of(SplitData.load(export), max_len=4)
    inputs, targets = windows.window(np.arange(len(windows)))
    assert inputs.tolist() == [[3, 4, 5, 6], [0, 0, 1, 2], [0, 0, 0, 9]]
    assert targets.tolist() == [[4, 5, 6, 7], [0, 0, 2, 3], [0, 0, 0, 10]]
    assert windows.num_targets == 6 + 1


def test_batches_are_shuffled_reproducibly_and_cropped(tmp_path):
    export = write_split_export(tmp_path / "e", [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10]], [[0] * 8, [0, 0]])
    windows = WindowIndex.of(SplitData.load(export), max_len=4)
    first = [b[0].tolist() for b in windows.batches(2, np.random.default_rng(3))]
    again = [b[0].tolist() for b in windows.batches(2, np.random.default_rng(3))]
    assert first == again
    assert sorted(row for batch in first for row in batch) != []
    for batch in windows.batches(1, np.random.default_rng(0)):
        assert batch.inputs[0, 0] != 0  # a batch of one window carries no padding column
        assert batch.timestamps is None  # only a model that reads times gets them


def test_windows_carry_the_inputs_timestamps_when_asked(tmp_path):
    times = [[10, 20, 30, 40, 50, 60, 70, 80], [5, 6]]
    export = write_split_export(tmp_path / "e", [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10]], [[0] * 7 + [1], [0, 0]], times)
    windows = WindowIndex.of(SplitData.load(export), max_len=4, timestamps=True)
    expected = [[30, 40, 50, 60], [0, 0, 10, 20], [0, 0, 0, 5]]  # aligned with the inputs of the window test above
    assert windows.input_timestamps(np.arange(len(windows))).tolist() == expected
    for batch in windows.batches(2, np.random.default_rng(0)):
        assert batch.timestamps.shape == batch.inputs.shape
        assert torch.equal(batch.timestamps == 0, batch.inputs == 0)  # a time for every input, 0 on padding
