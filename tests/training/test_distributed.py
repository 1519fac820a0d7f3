"""Data-parallel training: two processes under torchrun (gloo) train exactly what one process trains with the
same global batch and seed, and a run killed mid-way resumes under DDP to the same result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recmodels.data.split_data import write_split_export

# Dropout off: each process draws its own dropout masks, which no single process can reproduce.
ARGS = ["--train.batch_size", "5", "--train.lr", "0.02", "--train.patience", "0", "--train.eval_max_targets", "null",
        "--model.d_model", "16", "--model.max_len", "16", "--model.dropout", "0"]  # fmt: skip
# Gradients are summed across processes in another order than within one: float32 rounding, ~1e-7 per step.
LOSS_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve users walking an item cycle (the next item is learnable); an odd global batch (5 rows)."""
    histories = [[(user * 3 + t) % 20 + 1 for t in range(40)] for user in range(12)]
    splits = [[0] * 34 + [1] * 3 + [2] * 3 for _ in histories]
    return write_split_export(tmp_path_factory.mktemp("ddp") / "export", histories, splits, num_items=20)


def train(export: Path, out: Path, processes: int, epochs: int, model: str = "gru4rec") -> dict:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [*(launcher if processes > 1 else [sys.executable]), "-m", "recmodels.train", model]
    command += ["--export", str(export), "--out", str(out), "--train.epochs", str(epochs), *ARGS]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def assert_same_training(one: dict, two: dict) -> None:
    losses = [(a["train_loss"], b["train_loss"]) for a, b in zip(one["epochs"], two["epochs"], strict=True)]
    assert all(abs(a - b) <= LOSS_TOLERANCE * abs(a) for a, b in losses), losses
    assert one["test"]["overall"] == pytest.approx(two["test"]["overall"], abs=1e-6)


@pytest.mark.parametrize("model", ["gru4rec", "recmamba"])
def test_two_processes_train_what_one_process_trains(export, tmp_path, model):
    one = train(export, tmp_path / "one", processes=1, epochs=3, model=model)
    two = train(export, tmp_path / "two", processes=2, epochs=3, model=model)
    assert_same_training(one, two)
    assert two["cost"]["train_events_per_second"] > 0


def test_a_killed_ddp_run_resumes_to_the_same_result(export, tmp_path):
    straight = train(export, tmp_path / "straight", processes=2, epochs=3)
    train(export, tmp_path / "interrupted", processes=2, epochs=2)  # stops after epoch 2, as if killed there
    resumed = train(export, tmp_path / "interrupted", processes=2, epochs=3)
    assert [e["train_loss"] for e in resumed["epochs"]] == [e["train_loss"] for e in straight["epochs"]]
    assert resumed["test"]["overall"] == straight["test"]["overall"]
