"""Finds the split that downstream assets train and report on: the one ``splits`` exported in this run
(or the run it re-executes), else its latest export, so that two runs on two datasets never swap splits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from pipelines.lineage import upstream


@dataclass(frozen=True)
class CurrentSplit:
    dataset: str
    fingerprint: str
    export_dir: Path
    metadata: dict[str, object]


def current_split(context: dg.AssetExecutionContext) -> CurrentSplit:
    """The export version this run's ``splits`` wrote (an immutable folder), with its ``metadata.json``."""
    source = upstream(context, "splits")
    if not source.metadata.get("export_written", True):
        raise dg.Failure(
            f"The splits materialization of run {source.run_id} failed its checks and exported nothing: "
            "fix the split (see its check results) and re-materialize it."
        )
    export_dir = Path(str(source.value("export_path")))
    metadata_file = export_dir / "metadata.json"
    if not metadata_file.is_file():
        raise dg.Failure(f"{metadata_file} is missing (an export version this old is pruned): re-materialize splits.")
    metadata = json.loads(metadata_file.read_text())
    return CurrentSplit(metadata["dataset"], metadata["fingerprint"], export_dir, metadata)
