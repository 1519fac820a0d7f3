"""Evaluation from kept states: a streaming model's test continues each history from where validation left
it, with the same ranks as encoding every history again."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recmodels import build_model
from recmodels.data.split_data import SplitData, write_split_export
from recmodels.evaluation.evaluate import encode_targets, evaluate, select_targets
from recmodels.evaluation.states import UserStates
from recmodels.ops import use_backend
from recmodels.training.config import TrainConfig
from recmodels.training.loop import fit

STREAMING = ["recmamba", "mamba4rec", "gru4rec", "lrurec"]


@pytest.fixture(autouse=True)
def chunked_scan():
    with use_backend("chunked"):
        yield


def export(tmp_path, mode: str) -> SplitData:
    """Users of 5..60 events over 50 items; under the global time split some events share a timestamp."""
    rng = np.random.default_rng(0)
    histories, splits, times = [], [], []
    for _ in range(14):
        length = int(rng.integers(5, 60))
        histories.append(rng.integers(1, 51, length).tolist())
        splits.append([0] * (length - 4) + [1, 1, 2, 2] if mode == "global_time" else [0] * (length - 2) + [1, 2])
        times.append(np.sort(rng.integers(0, length // 2 + 1, length) * 1000).tolist())
    folder = write_split_export(tmp_path / mode, histories, splits, num_items=50, timestamps=times, split_mode=mode)
    return SplitData.load(folder)


def model_for(name: str, data: SplitData):
    torch.manual_seed(0)
    return build_model(name, data.num_items, d_model=16, n_layers=2, max_len=8, dropout=0.0).eval()


@pytest.mark.parametrize("mode", ["global_time", "leave_one_out"])
@pytest.mark.parametrize("name", STREAMING)
def test_the_test_continued_from_validation_states_ranks_as_encoding_again(tmp_path, name, mode):
    data = export(tmp_path, mode)
    model = model_for(name, data)
    states = UserStates(model, data.num_users)
    valid = evaluate(model, data, "valid", states=states, stream_chunk=16)
    assert states.ends.max() > 0
    continued = evaluate(model, data, "test", states=states, stream_chunk=16)
    again = evaluate(model, data, "test", stream_chunk=16)
    np.testing.assert_array_equal(continued.ranks.rank, again.ranks.rank)
    np.testing.assert_array_equal(valid.ranks.rank, evaluate(model, data, "valid", stream_chunk=16).ranks.rank)


def kept_states(model, data: SplitData, first) -> UserStates:
    """The states an encoding of targets ``first`` leaves."""
    states = UserStates(model, data.num_users)
    encode_targets(model, data, first, torch.device("cpu"), states=states)
    return states


def assert_continued_equals_fresh(model, data: SplitData, states: UserStates, then) -> None:
    """Targets ``then`` encoded from ``states`` as if encoded afresh."""
    cpu = torch.device("cpu")
    torch.testing.assert_close(
        encode_targets(model, data, then, cpu, states=states), encode_targets(model, data, then, cpu)
    )


@pytest.mark.parametrize("name", STREAMING)
def test_continued_hidden_states_equal_a_fresh_encoding(tmp_path, name):
    data = export(tmp_path, "global_time")
    model = model_for(name, data)
    states = kept_states(model, data, select_targets(data, "valid"))
    assert_continued_equals_fresh(model, data, states, select_targets(data, "test"))


def test_a_user_kept_past_a_target_starts_again_from_a_fresh_state(tmp_path):
    data = export(tmp_path, "leave_one_out")
    model = model_for("gru4rec", data)
    states = kept_states(model, data, select_targets(data, "test"))  # kept past every valid target
    assert_continued_equals_fresh(model, data, states, select_targets(data, "valid"))


def test_only_some_users_kept(tmp_path):
    """A validation on a subset of targets keeps the states of its users; the others start fresh."""
    data = export(tmp_path, "global_time")
    model = model_for("recmamba", data)
    states = kept_states(model, data, select_targets(data, "valid", max_targets=5))
    assert 0 < (states.ends > 0).sum() < data.num_users
    assert_continued_equals_fresh(model, data, states, select_targets(data, "test"))


def test_fit_tests_from_the_best_epochs_validation_states(tmp_path):
    data = export(tmp_path, "global_time")
    model = model_for("lrurec", data).train()
    result = fit(model, data, TrainConfig(epochs=3, batch_size=4, patience=0, eval_max_targets=None))
    np.testing.assert_array_equal(result.test.ranks.rank, evaluate(model, data, "test").ranks.rank)


def test_a_model_without_state_is_refused():
    with pytest.raises(ValueError, match="keeps no state"):
        UserStates(build_model("sasrec", 10), 3)
