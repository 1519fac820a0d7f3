"""The lifelong location's two jobs: ingest some days, walk one window. Their partitions are the location's,
so they are built with them (``definitions.build_definitions``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from pipelines.lifelong.partitions import LifelongPartitions

if TYPE_CHECKING:  # what define_asset_job returns; dagster does not export the name
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

INGEST_JOB, WALK_FORWARD_JOB = "daily_ingest", "walk_forward_refresh"


@dataclass(frozen=True)
class LifelongJobs:
    ingest: UnresolvedAssetJobDefinition  # daily_events, one or more days
    walk_forward: UnresolvedAssetJobDefinition  # walk_forward, one window

    @classmethod
    def over(cls, partitions: LifelongPartitions) -> LifelongJobs:
        ingest = dg.define_asset_job(
            INGEST_JOB, selection=["daily_events"], partitions_def=partitions.days, description="Ingest landed days."
        )
        walk_forward = dg.define_asset_job(
            WALK_FORWARD_JOB,
            selection=["walk_forward"],
            partitions_def=partitions.windows,
            description="Walk one window.",
        )
        return cls(ingest, walk_forward)

    def all(self) -> list[UnresolvedAssetJobDefinition]:
        return [self.ingest, self.walk_forward]
