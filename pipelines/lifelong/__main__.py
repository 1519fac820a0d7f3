"""A walk-forward evaluation from the command line, on the drifting synthetic stream by default:

    python -m pipelines.lifelong --warmup-days 14 --eval-days 10 --models sasrec gru4rec

lands the stream's days (unless already there), ingests them as one single-run backfill of
``daily_events``, then materializes ``walk_forward`` on each evaluation day in turn (a window is one day
here) and prints the report table.
Runs are recorded in ``DAGSTER_HOME`` when it is set (so they show in the UI), else in a throwaway instance.
The partitions are the default settings' (days from 2022-01-01, day windows), not ``configs/lifelong.yaml``'s.
"""

from __future__ import annotations

import argparse
import os

import dagster as dg

from pipelines.data.resources import Warehouse
from pipelines.data.sources import drift
from pipelines.lifelong import tracking
from pipelines.lifelong.config import WalkForwardConfig
from pipelines.lifelong.definitions import lifelong_assets
from pipelines.lifelong.settings import LifelongSettings
from pipelines.paths import ProjectPaths
from pipelines.resources import MlflowTracking

RESOURCES = {"warehouse": Warehouse(), "mlflow_tracking": MlflowTracking()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(drift.SCALES), default="default")
    parser.add_argument("--warmup-days", type=int, default=14, help="days trained on before the first window")
    parser.add_argument("--eval-days", type=int, default=10, help="days walked after the warm-up, one window each")
    parser.add_argument("--models", nargs="+", default=["sasrec", "gru4rec"])
    parser.add_argument("--strategies", nargs="+", default=["frozen", "fine_tune", "retrain"])
    parser.add_argument(
        "--last", type=int, default=0, help="latest evaluation days the table averages (0: all but the first)"
    )
    args = parser.parse_args(argv)
    spec = drift.SCALES[args.scale]
    days = [drift.day_key(day) for day in range(min(spec.days, args.warmup_days + args.eval_days))]
    folder = ProjectPaths.from_env().landing / drift.DRIFT_FOLDER
    missing = [i for i, day in enumerate(days) if not (folder / drift.day_file_name(i, "kuairand")).exists()]
    if missing:
        drift.land_days(drift.generate(spec), folder, "kuairand", missing)
    last = args.last or max(1, args.eval_days - 1)  # the first day also pays for the initial trainings
    config = WalkForwardConfig(models=args.models, strategies=args.strategies, report_last_windows=last)
    # The default settings: days from the stream's first day (2022-01-01), one window per day.
    daily_events, walk_forward = lifelong_assets(LifelongSettings().partitions())
    with _instance() as instance:
        range_tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
        dg.materialize([daily_events], tags=range_tags, resources=RESOURCES, instance=instance)
        for day in days[args.warmup_days :]:
            dg.materialize(
                [daily_events, walk_forward],
                selection=[walk_forward],
                partition_key=day,
                run_config={"ops": {"walk_forward": {"config": config.model_dump()}}},
                resources=RESOURCES,
                instance=instance,
            )
    found = tracking.series(MlflowTracking(), config.dataset)
    print(tracking.as_markdown(tracking.report_table(found, config.report_last_windows)))
    return 0


def _instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


if __name__ == "__main__":
    raise SystemExit(main())
