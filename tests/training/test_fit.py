"""Training: every model learns a tiny dataset; resuming from a checkpoint reproduces an uninterrupted run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recmodels import MODELS, build_model
from recmodels.data.split_data import SplitData, write_split_export
from recmodels.evaluation.cost import CostReport
from recmodels.ops import use_backend
from recmodels.train import main
from recmodels.training.config import run_config_class
from recmodels.training.loop import Progress, TrainConfig, count_patience, fit, train_run


@pytest.fixture(autouse=True)
def chunked_scan():
    with use_backend("chunked"):
        yield


def cycle_export(tmp_path, num_users=8, num_items=12, length=40):
    """Each user walks the item cycle 1..num_items from a different start: the next item is predictable."""
    histories, splits = [], []
    for user in range(num_users):
        histories.append([(user + t) % num_items + 1 for t in range(length)])
        splits.append([0] * (length - 6) + [1] * 3 + [2] * 3)
    return SplitData.load(write_split_export(tmp_path / "export", histories, splits, num_items=num_items))


SMALL = {"d_model": 16, "max_len": 16, "dropout": 0.0}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_model_overfits_a_tiny_dataset(tmp_path, name):
    data = cycle_export(tmp_path)
    torch.manual_seed(0)
    model = build_model(name, data.num_items, **SMALL)
    result = fit(model, data, TrainConfig(epochs=12, batch_size=8, lr=2e-2, patience=0, seed=0))
    assert result.epochs[-1].train_loss < 0.5 * result.epochs[0].train_loss
    assert result.test.overall["hr_5"] == 1.0, result.test.overall


@pytest.mark.parametrize("loss", ["ce", "sampled_softmax", "bce"])
def test_every_loss_trains(tmp_path, loss):
    data = cycle_export(tmp_path)
    torch.manual_seed(0)
    model = build_model("gru4rec", data.num_items, **SMALL)
    config = TrainConfig(epochs=6, batch_size=8, lr=2e-2, loss=loss, num_negatives=5, patience=0)
    result = fit(model, data, config)
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert result.test.overall["hr_10"] > 0.5


def run(tmp_path, data, epochs, folder):
    torch.manual_seed(0)
    model = build_model("recmamba", data.num_items, d_model=16, max_len=16, dropout=0.3)
    config = TrainConfig(
        epochs=epochs,
        batch_size=4,
        lr=5e-3,
        loss="sampled_softmax",
        num_negatives=4,
        patience=0,
    )
    return model, fit(model, data, config, checkpoint_dir=tmp_path / folder)


def test_resuming_reproduces_an_uninterrupted_run(tmp_path):
    data = cycle_export(tmp_path)
    straight_model, straight = run(tmp_path, data, 3, "straight")
    run(tmp_path, data, 2, "interrupted")  # stops after epoch 2, as if killed there
    resumed_model, resumed = run(tmp_path, data, 3, "interrupted")
    assert [e.train_loss for e in resumed.epochs] == [e.train_loss for e in straight.epochs]
    assert [e.valid for e in resumed.epochs] == [e.valid for e in straight.epochs]
    assert resumed.best_epoch == straight.best_epoch and resumed.test.overall == straight.test.overall
    for name, value in straight_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[name], value), name


@pytest.mark.parametrize(
    ("curve", "min_improvement", "counts"),
    [
        ([0.10, 0.11, 0.111, 0.112, 0.113], 0.0, [0, 0, 0, 0, 0]),  # every new best resets the count
        ([0.10, 0.11, 0.111, 0.112, 0.113], 0.05, [0, 0, 1, 2, 3]),  # creeping by <5% of 0.11 resets nothing
        ([0.10, 0.11, 0.111, 0.1156, 0.10], 0.05, [0, 0, 1, 0, 1]),  # 0.1156 beats 0.11 by 5.1%: a new mark
    ],
)
def test_patience_counts_epochs_that_do_not_beat_the_mark_by_min_improvement(curve, min_improvement, counts):
    progress = Progress()
    seen = []
    for metric in curve:
        count_patience(progress, metric, min_improvement)
        seen.append(progress.epochs_without_improvement)
    assert seen == counts


def test_min_improvement_stops_a_creeping_run_and_keeps_its_best_epoch(tmp_path):
    data = cycle_export(tmp_path)
    results = {}
    for min_improvement in (0.0, 10.0):  # 10: no epoch can beat the first by 1000%
        torch.manual_seed(0)
        model = build_model("gru4rec", data.num_items, **SMALL)
        config = TrainConfig(epochs=6, lr=1e-2, patience=2, min_improvement=min_improvement)
        results[min_improvement] = fit(model, data, config)
    strict = results[10.0]
    assert strict.stopped_early and len(strict.epochs) == 3
    best = max(range(3), key=lambda i: strict.epochs[i].valid["ndcg_10"])
    assert strict.best_epoch == best + 1  # the weights kept are the best epoch's, not the mark's
    assert len(results[0.0].epochs) > 3  # the same run without the margin trains on


def test_early_stopping_restores_the_best_epoch(tmp_path):
    data = cycle_export(tmp_path)
    torch.manual_seed(0)
    model = build_model("gru4rec", data.num_items, **SMALL)
    reports = []
    result = fit(model, data, TrainConfig(epochs=10, lr=0.0, patience=2), on_epoch=reports.append)
    assert result.stopped_early and result.best_epoch == 1 and len(result.epochs) == 3
    assert [r.epoch for r in reports] == [1, 2, 3]
    assert result.valid.overall == result.epochs[0].valid


def test_warm_start_loads_the_given_weights(tmp_path):
    data = cycle_export(tmp_path)
    torch.manual_seed(0)
    source = build_model("gru4rec", data.num_items, **SMALL)
    torch.manual_seed(1)
    model = build_model("gru4rec", data.num_items, **SMALL)
    fit(model, data, TrainConfig(epochs=0), init_state_dict=source.state_dict())
    for name, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], value)


def test_cost_report_is_complete(tmp_path):
    data = cycle_export(tmp_path)
    torch.manual_seed(0)
    model = build_model("sasrec", data.num_items, **SMALL)
    cost = fit(model, data, TrainConfig(epochs=2)).cost
    metrics = cost.as_metrics()
    assert set(metrics) == set(CostReport.__dataclass_fields__)
    assert metrics["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert cost.train_seconds_per_epoch > 0 and cost.train_events_per_second > 0 and cost.peak_memory_mb >= 0


def test_command_line_trains_and_prints_json(tmp_path, capsys):
    cycle_export(tmp_path)
    out = tmp_path / "run"
    argv = ["linrec", "--export", str(tmp_path / "export"), "--out", str(out), "--train.epochs", "2"]
    code = main([*argv, "--model.d_model", "16", "--model.max_len", "16", "--train.eval_max_targets", "null"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"] == "linrec" and len(printed["epochs"]) == 2
    assert printed["params"]["model.d_model"] == 16 and printed["params"]["train.eval_max_targets"] is None
    assert json.loads((out / "result.json").read_text())["test"]["num_targets"] == 24
    assert (out / "checkpoint.pt").exists()
    assert np.isfinite(printed["test"]["overall"]["ndcg_10"])


def test_command_line_rejects_old_flat_options(capsys):
    with pytest.raises(SystemExit):
        main(["gru4rec", "--export", "x", "--epochs", "2"])
    assert "unrecognized arguments: --epochs 2" in capsys.readouterr().err


def test_fit_refuses_an_empty_training_set(tmp_path):
    """A split whose cut-offs fall before every event (a wrong time unit, say) must not "train" with loss 0."""
    histories = [[1, 2, 3, 4], [2, 3, 4, 1]]
    splits = [[1, 1, 2, 2], [1, 2, 2, 2]]
    data = SplitData.load(write_split_export(tmp_path / "export", histories, splits, num_items=4))
    model = build_model("gru4rec", data.num_items, **SMALL)
    with pytest.raises(ValueError, match="nothing to train on: the split has 0 training events"):
        fit(model, data, TrainConfig(epochs=1, batch_size=2))


def gap_export(tmp_path, num_users=16, length=40, seed=0):
    """Events 10 s or 3 days apart at random; item k is 1 after a short gap between events k - 2 and k - 1,
    else 2. The items before a target say nothing about it (chance NDCG@5 ~ 0.82): only the times do."""
    rng = np.random.default_rng(seed)
    histories, splits, times = [], [], []
    for _ in range(num_users):
        moments = 1_700_000_000_000 + np.cumsum(np.where(rng.random(length) < 0.5, 10_000, 3 * 86_400_000))
        histories.append([3, 3] + [1 if moments[k - 1] - moments[k - 2] < 60_000 else 2 for k in range(2, length)])
        times.append(moments)
        splits.append([0] * (length - 6) + [1] * 3 + [2] * 3)
    return SplitData.load(write_split_export(tmp_path / "export", histories, splits, times, num_items=3))


def test_hstu_learns_from_event_times_through_the_one_training_entry(tmp_path):
    data = gap_export(tmp_path)
    sections = {"model": {"d_model": 16, "max_len": 16, "dropout": 0.0}}
    sections["train"] = {"epochs": 6, "batch_size": 8, "lr": 2e-2, "patience": 0, "seed": 0, "device": "cpu"}
    trained = train_run("hstu", run_config_class("hstu").model_validate(sections), data)
    assert trained.result.test.overall["ndcg_5"] > 0.99  # training windows and evaluation both carried the times


def test_hstu_trains_with_its_published_recipe(tmp_path):
    """Unit vectors, temperature 0.05, sampled softmax with sparse item updates (rows read via item_vectors)."""
    data = cycle_export(tmp_path)
    torch.manual_seed(0)
    model = build_model("hstu", data.num_items, **SMALL, l2_normalize=True, temperature=0.05)
    config = TrainConfig(
        epochs=3, batch_size=8, lr=1e-2, loss="sampled_softmax", num_negatives=5, sparse_item_updates=True, patience=0
    )
    result = fit(model, data, config)
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert result.test.overall["hr_10"] > 0.5


def test_max_steps_per_epoch_trains_a_share_of_the_windows(tmp_path):
    data = cycle_export(tmp_path, num_users=16)

    def events_per_epoch(config: TrainConfig) -> list[int]:
        torch.manual_seed(0)
        model = build_model("gru4rec", data.num_items, **SMALL)
        return [round(e.events_per_second * e.epoch_seconds) for e in fit(model, data, config).epochs]

    assert events_per_epoch(TrainConfig(epochs=1, batch_size=2, patience=0)) == [16 * 33]
    capped = events_per_epoch(TrainConfig(epochs=2, batch_size=2, patience=0, max_steps_per_epoch=3))
    assert len(capped) == 2 and all(0 < events <= 3 * 2 * SMALL["max_len"] for events in capped)


def test_test_max_targets_ranks_a_seeded_subset(tmp_path):
    data = cycle_export(tmp_path, num_users=16)
    model = build_model("gru4rec", data.num_items, **SMALL)
    every = fit(model, data, TrainConfig(epochs=0, patience=0)).test
    sampled = [fit(model, data, TrainConfig(epochs=0, patience=0, test_max_targets=10)).test for _ in range(2)]
    assert every.num_targets == 16 * 3 and [result.num_targets for result in sampled] == [10, 10]
    assert sampled[0].overall == sampled[1].overall
