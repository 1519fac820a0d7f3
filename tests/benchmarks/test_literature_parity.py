"""The literature-parity script: every recipe is a valid run config, a stopped recipe resumes from its
checkpoint under RECMAMBA_HOME, converges only by its own stopping rule, and the summary keeps other rows."""

from __future__ import annotations

import json

import pytest

from recmodels import build_model
from recmodels.data.split_data import SplitData, write_split_export
from recmodels.training.checkpoint import CHECKPOINT_FILE
from tests.benchmarks.scripts import load_script

parity = load_script("literature_parity")

# The smallest recipe: a fixed epoch count (patience 0), as the generative-recommenders recipes have.
TINY = {
    "architecture": "gru4rec",
    "source": "a test",
    "evaluation": "leave-one-out, full ranking",
    "model": {"d_model": 8, "n_layers": 1, "dropout": 0.0},
    "train": {"loss": "ce", "epochs": 2, "patience": 0, "lr": 1e-2, "weight_decay": 0.0},
    "batch": {"size": 4, "unit": "sequences"},
    "not_matched": "nothing",
}


@pytest.fixture
def cycles(tmp_path) -> SplitData:
    """Eight users walking the item cycle 1..12 from different starts; leave-one-out targets."""
    histories = [[(user + t) % 12 + 1 for t in range(20)] for user in range(8)]
    splits = [[0] * 18 + [1, 2] for _ in histories]
    export = write_split_export(tmp_path / "export", histories, splits, num_items=12, split_mode="leave_one_out")
    return SplitData.load(export)


def test_checkpoints_live_under_recmamba_home(project_home):
    assert parity.checkpoint_dir("sasrec") == project_home.resolve() / "checkpoints" / "literature_parity" / "sasrec"


def test_a_run_stopped_by_max_epochs_resumes_at_the_next_epoch(project_home, cycles):
    capped = parity.train("tiny", TINY, cycles, max_epochs=1)
    assert (capped["epochs"], capped["epochs_this_run"]) == (1, 1)
    resumed = parity.train("tiny", TINY, cycles)
    assert (resumed["epochs"], resumed["epochs_this_run"]) == (2, 1)
    assert len(resumed["curve"]) == 2 and resumed["curve"][0] == capped["curve"][0]
    assert resumed["epoch_reports"][0] == capped["epoch_reports"][0]  # epoch 1 as the first run measured it
    assert (parity.checkpoint_dir("tiny") / CHECKPOINT_FILE).exists()


def test_converged_only_when_the_recipes_own_rule_fired(project_home, cycles):
    capped = parity.train("tiny", TINY, cycles, max_epochs=1)
    assert not capped["converged"] and "--max-epochs" in capped["status"]
    assert capped["epochs_left"] == {"at_least": 1, "at_most": 1}
    done = parity.train("tiny", TINY, cycles)
    assert done["converged"] and done["epochs_left"] == {"at_least": 0, "at_most": 0}
    again = parity.train("tiny", TINY, cycles)  # nothing left to train: the same best weights, tested again
    assert again["epochs_this_run"] == 0 and again["converged"] and again["ndcg_10"] == done["ndcg_10"]


def test_a_time_budget_stops_between_epochs_and_leaves_the_checkpoint(project_home, cycles):
    stopped = parity.train("tiny", TINY, cycles, budget_s=1e-9)
    assert (stopped["epochs"], stopped["converged"]) == (1, False) and "time budget" in stopped["status"]
    assert stopped["ndcg_10_ci"][0] <= stopped["ndcg_10"] <= stopped["ndcg_10_ci"][1]
    assert parity.train("tiny", TINY, cycles)["epochs_this_run"] == 1


def test_fresh_starts_a_recipe_over(project_home, cycles):
    parity.train("tiny", TINY, cycles)
    assert parity.train("tiny", TINY, cycles, fresh=True)["epochs_this_run"] == 2


def test_a_changed_recipe_does_not_resume_the_old_checkpoint(project_home, cycles):
    parity.train("tiny", TINY, cycles, max_epochs=1)
    wider = {**TINY, "model": {**TINY["model"], "d_model": 16}}
    with pytest.raises(SystemExit, match="--fresh"):
        parity.train("tiny", wider, cycles)


def test_a_checkpoint_from_before_a_new_run_config_field_resumes(project_home, cycles):
    """A field added to the run config since (here min_improvement, at its default) is no change of recipe."""
    parity.train("tiny", TINY, cycles, max_epochs=1)
    saved = parity.checkpoint_dir("tiny") / parity.RUN_CONFIG_FILE
    older = json.loads(saved.read_text())
    del older["train"]["min_improvement"]
    saved.write_text(json.dumps(older))
    assert parity.train("tiny", TINY, cycles)["epochs_this_run"] == 1


def test_the_summary_merge_keeps_other_recipes(project_home, cycles, tmp_path):
    path = tmp_path / "summary.json"
    entry = parity.train("tiny", TINY, cycles, max_epochs=1)
    parity.write_summary(path, {"other": {**entry, "architecture": "sasrec"}})
    summary = parity.write_summary(path, {"tiny": entry})
    assert set(summary["models"]) == {"other", "tiny"}
    assert json.loads(path.read_text()) == summary and summary["max_len"] == parity.MAX_LEN
    assert entry["published_ndcg_10"] is None and entry["gap_hr_10"] is None
    assert "| tiny | gru4rec |" in parity.table(summary["models"])


def test_the_gap_is_relative_to_the_published_number(project_home, cycles):
    entry = parity.train("gru4rec", TINY, cycles, max_epochs=1)
    published = parity.PUBLISHED["gru4rec"]["ndcg_10"]
    assert entry["published_ndcg_10"] == published
    assert entry["gap_ndcg_10"] == pytest.approx((entry["ndcg_10"] - published) / published)


@pytest.mark.parametrize("name", sorted(parity.RECIPES))
def test_every_recipe_is_a_valid_run_config(name, cycles):
    recipe = parity.RECIPES[name]
    config = parity.run_config(recipe, cycles, recipe["train"]["epochs"])
    assert config.model.model_dump() | recipe["model"] == config.model.model_dump()
    assert config.train.model_dump() | recipe["train"] == config.train.model_dump()
    assert recipe["train"]["exclude_seen"] and recipe["evaluation"]
    build_model(recipe["architecture"], cycles.num_items, **config.model.model_dump())


def test_no_published_number_is_claimed_for_sasrec_ce():
    assert "sasrec_ce" not in parity.PUBLISHED and set(parity.PUBLISHED) <= set(parity.RECIPES)
