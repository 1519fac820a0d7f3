"""The default-budget benchmark: the synthetic log through the data assets, then each model through the command
line under the training assets' defaults, one row and one learning curve per model."""

from __future__ import annotations

import json

from pipelines.training.config import ASSET_TRAIN_DEFAULTS
from tests.benchmarks.scripts import load_script

budget = load_script("default_budget")


def test_the_flags_are_the_training_assets_defaults():
    flags = budget.budget_arguments()
    assert flags[flags.index("--train.patience") + 1] == str(ASSET_TRAIN_DEFAULTS["patience"])
    assert flags[flags.index("--model.max_len") + 1] == "256"


def test_a_tiny_run_writes_each_models_row_and_curve(project_home, tmp_path):
    out = tmp_path / "budget.json"
    budget.main(["--scale", "tiny", "--models", "gru4rec", "--home", str(project_home), "--json", str(out),
                 "--extra", "--train.epochs", "2"])  # fmt: skip
    written = json.loads(out.read_text())
    row = written["models"]["gru4rec"]
    assert row["validations"] == len(row["curve"]) <= 2 and 1 <= row["best"] <= row["validations"]
    assert 0.0 <= row["test_ndcg_10"] <= 1.0 and row["train_seconds"] > 0
    assert written["budget"][-2:] == ["--train.epochs", "2"]
