"""One run config: the launchpad, the command line and YAML resolve the same values to the same config, every
field has help, and a config in the old flat form says where each field went."""

import dagster as dg
import pydantic
import pytest
import yaml
from pydantic_settings import CliApp, get_subcommand

from pipelines.training.assets import training_assets
from pipelines.training.config import ASSET_MODEL_DEFAULTS, ASSET_TRAIN_DEFAULTS, training_config_class
from pipelines.training.params import run_params
from recmodels.train import command_line_class
from recmodels.training.config import TrainConfig, run_config_class


def test_command_line_defaults_are_the_run_config_defaults():
    """The CLI and YAML resolve the same values to the same run config; the launchpad to the same, but for the
    main job's training budget, which it states in full."""
    cli = CliApp.run(command_line_class(), cli_args=["sasrec", "--export", "x", "--model.max_len", "64"])
    command = get_subcommand(cli)
    from_yaml = run_config_class("sasrec").model_validate(yaml.safe_load("model: {max_len: 64}"))
    resolved = {"model": command.model.model_dump(), "train": command.train.model_dump()}
    assert resolved == from_yaml.model_dump()
    assert command.train == TrainConfig()
    budget = {**TrainConfig().model_dump(), **ASSET_TRAIN_DEFAULTS}
    launchpad = training_config_class("sasrec")(model={"max_len": 64}).run_config("sasrec")
    assert launchpad.model_dump() == {"model": resolved["model"], "train": budget}
    assert training_config_class("sasrec")().run_config("sasrec").model.max_len == ASSET_MODEL_DEFAULTS["max_len"]


def test_every_launchpad_field_has_help():
    for asset in training_assets:
        schema = asset.op.config_schema
        for section in ("model", "train"):
            fields = schema.config_type.fields[section].config_type.fields
            undocumented = [field for field, spec in fields.items() if not spec.description]
            assert not undocumented, (asset.key, section, undocumented)


@pytest.mark.parametrize(("field", "moved_to"), [("max_len", "model.max_len"), ("epochs", "train.epochs")])
def test_an_old_flat_config_names_the_moved_field(field, moved_to):
    with pytest.raises(pydantic.ValidationError, match=f"config field '{field}' has moved to '{moved_to}'"):
        training_config_class("recmamba")(**{field: 64})


def test_the_launchpad_refuses_unknown_fields_by_name():
    with pytest.raises(pydantic.ValidationError, match="unknown config field 'epoch'"):
        training_config_class("sasrec")(epoch=3)
    assert isinstance(training_config_class("sasrec")(), dg.Config)


def test_seeds_give_one_run_config_per_seed_and_default_to_train_seed():
    config_class = training_config_class("gru4rec")
    assert [c.train.seed for c in config_class(train={"seed": 7}).run_configs("gru4rec")] == [7]
    seeded = config_class(train={"seed": 7, "lr": 0.01}, seeds=[1, 2])
    assert [(c.train.seed, c.train.lr) for c in seeded.run_configs("gru4rec")] == [(1, 0.01), (2, 0.01)]
    assert seeded.fingerprint() != config_class(train={"seed": 7, "lr": 0.01}).fingerprint()
    with pytest.raises(pydantic.ValidationError, match="seeds must be distinct"):
        config_class(seeds=[3, 3])


def test_a_multi_seed_run_logs_its_seeds_instead_of_train_seed():
    run_config = training_config_class("gru4rec")().run_config("gru4rec")
    assert run_params(run_config)["train.seed"] == 42 and "seeds" not in run_params(run_config)
    params = run_params(run_config, seeds=[1, 2, 3])
    assert params["seeds"] == "1, 2, 3" and "train.seed" not in params
