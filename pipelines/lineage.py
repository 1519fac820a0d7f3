"""Which materialization of an upstream asset a step builds on: the one made by this run (or by the run it
re-executes), else the latest one.

Dagster's "latest materialization" is global: with two runs at once (one per dataset, say) it can be the
other run's. Looking in the run first keeps each run on its own dataset and its own split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg


@dataclass(frozen=True)
class Upstream:
    """An upstream asset's materialization: the run that made it and its metadata values."""

    asset: str
    run_id: str
    metadata: dict[str, Any]
    made_by_this_run: bool

    def value(self, name: str) -> Any:
        if name not in self.metadata:
            raise dg.Failure(f"The materialization of {self.asset} by run {self.run_id} records no {name!r}.")
        return self.metadata[name]


def upstream(context: dg.AssetExecutionContext, asset: str) -> Upstream:
    """The materialization of ``asset`` this step must build on; a Failure when there is none."""
    key = dg.AssetKey(asset)
    instance = context.instance
    run: dg.DagsterRun | None = context.run
    while run is not None:
        found = _materialization_in_run(instance, run.run_id, key)
        if found is not None:
            return Upstream(asset, run.run_id, _values(found), made_by_this_run=True)
        run = instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    latest = instance.get_latest_materialization_event(key)
    if latest is None or latest.asset_materialization is None:
        raise dg.Failure(f"{asset} has never been materialized: materialize '*{asset}' first.")
    return Upstream(asset, latest.run_id, _values(latest.asset_materialization), made_by_this_run=False)


def _materialization_in_run(
    instance: dg.DagsterInstance, run_id: str, key: dg.AssetKey
) -> dg.AssetMaterialization | None:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, ascending=False
    ).records
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        if materialization is not None and materialization.asset_key == key:
            return materialization
    return None


def _values(materialization: dg.AssetMaterialization) -> dict[str, Any]:
    return {name: entry.value for name, entry in materialization.metadata.items()}
