"""``python -m recmodels.train <model> --export DIR [--out DIR] [--model.<field> V] [--train.<field> V]``: train
one model from a split export without Dagster (``--help`` lists every field of the run config,
``recmodels/training/config.py``). Under torchrun every process trains a shard and rank 0 reports.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

from pydantic import ConfigDict, Field, create_model
from pydantic_settings import BaseSettings, CliApp, CliSubCommand, SettingsConfigDict, get_subcommand

from recmodels.data.history_store import load_split
from recmodels.models import MODELS
from recmodels.training.config import flatten, run_config_class
from recmodels.training.distributed import shutdown
from recmodels.training.loop import prepare_process, train_run

TEST_RANKS_FILE = "test_ranks.parquet"  # every test target's rank, for intervals and paired tests


def command_line_class() -> type[BaseSettings]:
    """``python -m recmodels.train <model> --export DIR [--out DIR] [--model.<field> V] [--train.<field> V]``:
    one sub-command per architecture, its options generated from the run config (``null`` sets None)."""
    commands = {}
    for name in MODELS:
        run_config = run_config_class(name)
        command = create_model(
            f"Train{run_config.__name__}",
            __base__=run_config,
            __config__=ConfigDict(frozen=True, extra="forbid"),
            export=(Path, Field(description="Split export folder (Contract 1), e.g. data/exports/synthetic.")),
            out=(
                Path | None,
                Field(
                    None,
                    description="Folder for the checkpoint (resumed if there), result.json and the "
                    f"test's per-target ranks ({TEST_RANKS_FILE}).",
                ),
            ),
            history_store=(
                Path | None,
                Field(
                    None,
                    description="Read histories memory-mapped from this folder (converted once per export), "
                    "so RAM holds the batch, not the export; unset: load the export into memory.",
                ),
            ),
        )
        commands[name] = (CliSubCommand[command], Field(description=f"Train {name}."))
    return create_model(
        "TrainCommandLine",
        __base__=BaseSettings,
        __config__=SettingsConfigDict(cli_prog_name="python -m recmodels.train", cli_kebab_case=False),
        **commands,
    )


def main(argv: list[str] | None = None) -> int:
    """Train one model from an export; under torchrun every process trains a shard and rank 0 reports."""
    cli = CliApp.run(command_line_class(), cli_args=sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    command = get_subcommand(cli)
    name = next(name for name in MODELS if getattr(cli, name) is command)
    ranks = prepare_process(command.train.device, fill_kernel_cache=True)
    try:
        trained = train_run(
            name,
            command,
            load_split(command.export, command.history_store),
            on_epoch=lambda report: print(json.dumps(dataclasses.asdict(report)), file=sys.stderr),
            checkpoint_dir=command.out,
        )
    finally:
        shutdown()
    if not ranks.is_main:
        return 0
    config = {"model": command.model.model_dump(), "train": command.train.model_dump()}
    summary = {"model": name, "config": config, "params": flatten(config), **trained.result.as_dict()}
    if command.out:
        command.out.mkdir(parents=True, exist_ok=True)
        (command.out / "result.json").write_text(json.dumps(summary, indent=2))
        trained.result.test.ranks.write(command.out / TEST_RANKS_FILE)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
