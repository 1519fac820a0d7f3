"""Finds the split that downstream assets train and report on: the latest materialization of ``splits``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg


@dataclass(frozen=True)
class CurrentSplit:
    dataset: str
    fingerprint: str
    export_dir: Path
    metadata: dict[str, object]


def current_split(instance: dg.DagsterInstance) -> CurrentSplit:
    """The export the ``splits`` asset last wrote, with its ``metadata.json``."""
    event = instance.get_latest_materialization_event(dg.AssetKey("splits"))
    if event is None or event.asset_materialization is None:
        raise dg.Failure("The splits asset has never been materialized: materialize '*splits' first.")
    entry = event.asset_materialization.metadata.get("export_path")
    if entry is None:
        raise dg.Failure("The latest splits materialization records no export_path.")
    export_dir = Path(str(entry.value))
    metadata_file = export_dir / "metadata.json"
    if not metadata_file.is_file():
        raise dg.Failure(f"{metadata_file} is missing: re-materialize the splits asset.")
    metadata = json.loads(metadata_file.read_text())
    return CurrentSplit(metadata["dataset"], metadata["fingerprint"], export_dir, metadata)
