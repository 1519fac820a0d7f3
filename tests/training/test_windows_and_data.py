"""Reading the Contract-1 export and cutting training windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recmodels import build_model
from recmodels.data.split_data import SplitData, write_split_export
from recmodels.training.config import TrainConfig
from recmodels.training.loop import fit
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


TIED = [[10, 20, 20, 30, 40, 40, 40, 50, 60], [5, 5]]  # ms: user 1 has events at 20 and at 40 together, user 2 both


def tied_export(tmp_path, split_mode: str) -> SplitData:
    """Train events 1..7 of user 1 with simultaneous ones, then a validation and a test target; user 2's
    two train events share their moment."""
    histories, splits = [[1, 2, 3, 4, 5, 6, 7, 8, 9], [10, 11]], [[0] * 7 + [1, 2], [0, 0]]
    return SplitData.load(write_split_export(tmp_path / "e", histories, splits, TIED, split_mode=split_mode))


def test_under_the_global_time_split_no_training_event_is_predicted_from_one_at_its_own_timestamp(tmp_path):
    windows = WindowIndex.of(tied_export(tmp_path, "global_time"), max_len=4)
    inputs, targets = windows.window(np.arange(len(windows)))
    assert inputs.tolist() == [[3, 4, 5, 6], [0, 0, 1, 2], [0, 0, 0, 10]]
    assert targets.tolist() == [[4, 5, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]  # 3 (at 20), 6 and 7 (at 40), 11 (at 5)
    one_window_per_step = TrainConfig(epochs=1, batch_size=1, device="cpu")  # user 2's step has no target
    trained = fit(build_model("gru4rec", 11, d_model=8), tied_export(tmp_path, "global_time"), one_window_per_step)
    assert math.isfinite(trained.epochs[0].train_loss)


def test_leave_one_out_trains_on_every_pair_in_the_stable_order(tmp_path):
    windows = WindowIndex.of(tied_export(tmp_path, "leave_one_out"), max_len=4)
    _, targets = windows.window(np.arange(len(windows)))
    assert targets.tolist() == [[4, 5, 6, 7], [0, 0, 2, 3], [0, 0, 0, 11]]


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
