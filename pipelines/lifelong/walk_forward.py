"""The ``walk_forward`` asset: for window w, test each model as it stood before w on w's events, then
update it for the next window; one partition per window, each depending on the one before.

The blocking check ``no_target_seen_in_training`` holds every evaluated model to the rule that it was
trained only on events earlier than the window's first target; a state saved by a later window (e.g. a
window re-run after later ones) fails it instead of reporting a leaked score.
"""

import tempfile
from pathlib import Path

import dagster as dg
import numpy as np

from pipelines.data.resources import Warehouse
from pipelines.data.sql import run_sql
from pipelines.lifelong import tracking
from pipelines.lifelong.champion import Candidate, best, promote
from pipelines.lifelong.checkpoints import StrategyCheckpoints
from pipelines.lifelong.config import WalkForwardConfig
from pipelines.lifelong.daily_events import GROUP
from pipelines.lifelong.histories import EventLog, window_targets
from pipelines.lifelong.strategies import INITIAL, fine_tune, prepare
from pipelines.paths import ProjectPaths
from pipelines.registry import CHAMPION, registered_name
from pipelines.resources import MlflowTracking
from recmodels import SequentialRecommender
from recmodels.evaluation.evaluate import evaluate

LEAKAGE_CHECK = "no_target_seen_in_training"
DAY_MS = 86_400_000


def walk_forward_asset(windows: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    """``walk_forward`` with one partition per window of ``windows``, over the ``daily_events`` of its days."""

    @dg.asset(
        group_name=GROUP,
        partitions_def=windows,
        deps=[
            dg.AssetDep("daily_events", partition_mapping=dg.TimeWindowPartitionMapping()),
            dg.AssetDep(
                "walk_forward", partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
            ),
        ],
        check_specs=[dg.AssetCheckSpec(LEAKAGE_CHECK, asset="walk_forward", blocking=True)],
        kinds={"pytorch", "mlflow"},
    )
    def walk_forward(
        context: dg.AssetExecutionContext,
        config: WalkForwardConfig,
        warehouse: Warehouse,
        mlflow_tracking: MlflowTracking,
    ) -> dg.MaterializeResult:
        """Each model and strategy tested on the window's events by full ranking, then updated; MLflow series
        per strategy (step: the window's first day), and the drift plot and table."""
        return walk_window(context, config, warehouse, mlflow_tracking)

    return walk_forward


def walk_window(
    context: dg.AssetExecutionContext, config: WalkForwardConfig, warehouse: Warehouse, mlflow_tracking: MlflowTracking
) -> dg.MaterializeResult:
    window = context.partition_time_window
    start_ms, end_ms = int(window.start.timestamp() * 1000), int(window.end.timestamp() * 1000)
    with warehouse.connect(config.dataset, read_only=True) as con:
        log = EventLog.until(con, end_ms)
    targets = window_targets(log, start_ms, log.num_items)
    if not (targets.split == 2).any():
        raise dg.Failure(
            f"window {context.partition_key} of dataset {config.dataset!r} has no events: ingest its days first"
        )
    counts = window_counts(log, start_ms)
    start_day = start_ms // DAY_MS  # the MLflow step: the window's first day, counted from 1970-01-01
    leaks: dict[str, int] = {}
    rows, models = [], {}
    root = ProjectPaths.from_env().walk_forward_states(config.dataset)
    for name in config.models:
        for strategy in config.strategies:
            checkpoints = StrategyCheckpoints(root, name, strategy)
            prepared = prepare(strategy, name, config, log, start_ms, log.num_items, checkpoints, context.partition_key)
            target_times = targets.timestamps[targets.split == 2]
            leaks[f"{name}/{strategy}"] = int((target_times <= prepared.trained_until_ms).sum())
            if leaks[f"{name}/{strategy}"]:
                context.log.error(f"{name}/{strategy} was trained on targets of {context.partition_key}: not scored")
                continue
            result = evaluate(prepared.model, targets, "test", ks=(10,))  # on the model's training device
            if strategy == "fine_tune":
                prepared = fine_tune(prepared, config, log, start_ms)
                checkpoints.save(context.partition_key, prepared.model, prepared.trained_until_ms)
            metrics = {**result.overall, "train_seconds": prepared.train_seconds, **counts}
            run_id = tracking.series_run(mlflow_tracking, config.dataset, name, strategy)
            tracking.log_window(mlflow_tracking, run_id, start_day, metrics)
            rows.append({"model": name, "strategy": strategy, **metrics})
            models[name, strategy] = prepared.model
            context.log.info(f"{name}/{strategy} on {context.partition_key}: {metrics}")
    table, markdown, plot = _report(mlflow_tracking, config)
    leaked = {key: count for key, count in leaks.items() if count}
    champion = {}
    if config.promote_champion and not leaked and _is_latest_window(context):
        champion = _promote(context, config, warehouse, mlflow_tracking, table, models)
    return dg.MaterializeResult(
        metadata={
            "dataset": config.dataset,
            "window_start_ms": start_ms,
            "targets": int((targets.split == 2).sum()),
            **counts,
            "window": dg.MetadataValue.md(_window_table(rows)),
            "report": dg.MetadataValue.md(markdown),
            "drift_plot": dg.MetadataValue.path(str(plot)),
            **champion,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=LEAKAGE_CHECK,
                passed=not leaked,
                metadata={"targets_seen_in_training": sum(leaks.values()), "leaking": str(leaked or "none")},
                description=None if not leaked else f"models trained on this window's targets: {leaked}",
            )
        ],
    )


def window_counts(log: EventLog, start_ms: int) -> dict[str, float]:
    """New users and items (first seen in the window) and cold targets (item never seen before the window)."""
    before, inside = log.timestamps < start_ms, log.timestamps >= start_ms
    seen_items = np.unique(log.items[before])
    return {
        "new_users": float(len(np.setdiff1d(np.unique(log.users[inside]), np.unique(log.users[before])))),
        "new_items": float(len(np.setdiff1d(np.unique(log.items[inside]), seen_items))),
        "cold_targets": float((~np.isin(log.items[inside], seen_items)).sum()),
    }


def _window_table(rows: list[dict]) -> str:
    lines = [
        f"| {r['model']} | {r['strategy']} | {r['ndcg_10']:.4f} | {r['hr_10']:.4f} | {r['train_seconds']:.2f} |"
        for r in rows
    ]
    return "| model | strategy | NDCG@10 | HR@10 | train s |\n|---|---|---|---|---|\n" + "\n".join(lines)


def _is_latest_window(context: dg.AssetExecutionContext) -> bool:
    """Whether no later window has been walked: re-running an old window must not move the champion back."""
    walked = context.instance.get_materialized_partitions(context.asset_key)
    return not walked or context.partition_key >= max(walked)


def _promote(
    context: dg.AssetExecutionContext,
    config: WalkForwardConfig,
    warehouse: Warehouse,
    mlflow_tracking: MlflowTracking,
    table: list[dict],
    models: dict[tuple[str, str], SequentialRecommender],
) -> dict[str, str]:
    """Move the champion alias to the best (model, strategy) of the latest windows; its metadata."""
    state = {"frozen": INITIAL, "fine_tune": context.partition_key, "retrain": context.partition_key}
    candidates = [
        Candidate(r["model"], r["strategy"], models[key], state[r["strategy"]], r["ndcg_10"], r["train_seconds"])
        for r in table
        if (key := (r["model"], r["strategy"])) in models
    ]
    winner = best(candidates)
    if winner is None:
        return {}
    with warehouse.connect(config.dataset, read_only=True) as con:
        raw_ids = [row[0] for row in run_sql(con, "daily_item_raw_ids", num_items=winner.model.num_items).fetchall()]
    version = promote(context, mlflow_tracking, config.dataset, winner, raw_ids, config.report_last_windows)
    name = f"{registered_name(config.dataset)}@{CHAMPION}"
    context.log.info(f"{name} is v{version}: {winner.model_name}/{winner.strategy} ({winner.mean_ndcg_10:.4f})")
    return {"champion": f"{winner.model_name}/{winner.strategy}", "champion_registered_model": f"{name} (v{version})"}


def _report(mlflow_tracking: MlflowTracking, config: WalkForwardConfig) -> tuple[list[dict], str, Path]:
    """The table (mean over the latest windows per model and strategy), its Markdown and the drift plot over
    every window so far, logged to the report run and kept for the UI."""
    found = tracking.series(mlflow_tracking, config.dataset)
    table = tracking.report_table(found, config.report_last_windows)
    markdown = tracking.as_markdown(table)
    folder = ProjectPaths.from_env().walk_forward_states(config.dataset) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        tracking.drift_plot(found, Path(scratch) / "drift.png")
        tracking.log_report(mlflow_tracking, config.dataset, Path(scratch), markdown)
        plot = folder / "drift.png"
        (Path(scratch) / "drift.png").replace(plot)
    return table, markdown, plot
