"""MLflow for the walk-forward: one run per (model, strategy) whose metrics take the window's first day (days
since 1970-01-01) as step, and a report run holding the drift plot and the table of the latest windows."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from mlflow.entities import Metric

from pipelines.metric_names import TAG_DATASET, TAG_KIND, TAG_MODEL
from pipelines.resources import MlflowTracking

KIND_WALK_FORWARD = "walk_forward"
KIND_REPORT = "walk_forward_report"
TAG_STRATEGY = "recmamba.strategy"
PLOTTED = "ndcg_10"


def series_run(tracking: MlflowTracking, dataset: str, model: str, strategy: str) -> str:
    """The id of the run that holds (model, strategy)'s series on ``dataset``, created on first use."""
    tags = {TAG_KIND: KIND_WALK_FORWARD, TAG_DATASET: dataset, TAG_MODEL: model, TAG_STRATEGY: strategy}
    return _run(tracking, dataset, tags, f"walk_forward/{model}/{strategy}")


def log_window(tracking: MlflowTracking, run_id: str, start_day: int, metrics: dict[str, float]) -> None:
    """A window's metrics, at the step of its first day."""
    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, start_day) for key, value in metrics.items()]
    tracking.client.log_batch(run_id, metrics=batch)


def series(tracking: MlflowTracking, dataset: str) -> dict[tuple[str, str], dict[str, dict[int, float]]]:
    """Every (model, strategy)'s metrics as {metric: {step: value}}, the latest value per step."""
    runs = tracking.runs_of(dataset, {TAG_KIND: KIND_WALK_FORWARD, TAG_DATASET: dataset})
    found = {}
    for run in runs:
        key = (run.data.tags[TAG_MODEL], run.data.tags[TAG_STRATEGY])
        found[key] = {
            name: {m.step: m.value for m in sorted(tracking.client.get_metric_history(run.info.run_id, name),
                                                    key=lambda m: m.timestamp)}
            for name in run.data.metrics
        }  # fmt: skip
    return found


def report_table(found: dict, last: int) -> list[dict]:
    """Per (model, strategy): NDCG@10, HR@10, MRR@10 averaged over the ``last`` latest windows, and the mean
    training seconds per window."""
    rows = []
    for (model, strategy), metrics in sorted(found.items()):
        steps = sorted(metrics.get(PLOTTED, {}))[-last:]
        row = {"model": model, "strategy": strategy, "windows": len(steps)}
        for name in ("ndcg_10", "hr_10", "mrr_10", "train_seconds"):
            values = [metrics.get(name, {}).get(step) for step in steps]
            values = [v for v in values if v is not None]
            row[name] = sum(values) / len(values) if values else float("nan")
        rows.append(row)
    return rows


def as_markdown(rows: list[dict]) -> str:
    header = (
        "| model | strategy | windows | NDCG@10 | HR@10 | MRR@10 | train s/window |\n|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['model']} | {r['strategy']} | {r['windows']} | {r['ndcg_10']:.4f} | {r['hr_10']:.4f} | "
        f"{r['mrr_10']:.4f} | {r['train_seconds']:.2f} |"
        for r in rows
    ]
    return header + "\n".join(lines) + "\n"


def drift_plot(found: dict, path: Path) -> Path:
    """NDCG@10 per window, one line per model and strategy."""
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for (model, strategy), metrics in sorted(found.items()):
        points = sorted(metrics.get(PLOTTED, {}).items())
        if points:
            starts = [datetime.fromtimestamp(start_day * 86_400, UTC).date() for start_day, _ in points]
            axes.plot(starts, [v for _, v in points], marker=".", label=f"{model} / {strategy}")
    axes.set_xlabel("window start (UTC)")
    figure.autofmt_xdate()
    axes.set_ylabel("NDCG@10 on the window")
    axes.set_title("Walk-forward: how models age under drift")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def log_report(tracking: MlflowTracking, dataset: str, folder: Path, markdown: str) -> str:
    """The report run's artifacts replaced by the current plot and table; returns the run id."""
    run_id = _run(tracking, dataset, {TAG_KIND: KIND_REPORT, TAG_DATASET: dataset}, "walk_forward/report")
    (folder / "walk_forward.md").write_text(markdown)
    tracking.client.log_artifact(run_id, str(folder / "walk_forward.md"), "walk_forward")
    tracking.client.log_artifact(run_id, str(folder / "drift.png"), "walk_forward")
    return run_id


def _run(tracking: MlflowTracking, experiment: str, tags: dict[str, str], name: str) -> str:
    existing = tracking.runs_of(experiment, tags)
    if existing:
        return existing[0].info.run_id
    run = tracking.client.create_run(tracking.experiment_id(experiment), tags=tags, run_name=name)
    tracking.client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id
