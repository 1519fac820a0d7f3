"""Turns the training runs of one split into a comparison a reviewer can trust at a glance: each model's
headline numbers from its newest run, the popularity baselines, and the champion paired against every other
model and baseline on the targets they all ranked. How it reads is ``summary.py`` (the verdict in words) and
``tables.py`` (tables, CSV, MLflow metrics).

The champion is chosen on validation NDCG@10 (test is reported, never used to choose). Whether it *won* is
decided on test, by paired tests over the targets every model ranked (``significance.py``): a winner is
named only when its lead is beyond the noise; otherwise the summary says which models are tied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run

from pipelines.metric_names import (
    BUDGET_PARAMS,
    HEADLINE_METRIC,
    METRICS_AT_10,
    PARAM_WARM_START,
    TAG_CONVERGENCE,
    TAG_MODEL,
    TARGET_RANKS_ARTIFACT,
    baseline_metric,
    baseline_ranks_artifact,
    buckets_in,
    cost_metric,
    final_metric,
    interval_metric,
    seed_std_metric,
)
from pipelines.reporting.numbers import finite
from pipelines.reporting.significance import Pairing, Verdict, judge, pair
from pipelines.target_results import PAIRED_METRICS, PerTarget, load_per_target, same_targets, targets_in_common
from recmodels.evaluation.baselines import BASELINES

# column -> (MLflow metric, header a person reads)
COLUMNS = {
    "test_ndcg_10": (final_metric("test", "ndcg_10"), "test NDCG@10"),
    "test_ndcg_10_ci_low": (interval_metric("test", "ndcg_10", "low"), "test NDCG@10 95% CI low"),
    "test_ndcg_10_ci_high": (interval_metric("test", "ndcg_10", "high"), "test NDCG@10 95% CI high"),
    "test_ndcg_10_seed_std": (seed_std_metric("test", "ndcg_10"), "test NDCG@10 seed std"),
    "num_seeds": ("num_seeds", "seeds"),
    "test_hr_10": (final_metric("test", "hr_10"), "test HR@10"),
    "test_hr_10_ci_low": (interval_metric("test", "hr_10", "low"), "test HR@10 95% CI low"),
    "test_hr_10_ci_high": (interval_metric("test", "hr_10", "high"), "test HR@10 95% CI high"),
    "test_mrr_10": (final_metric("test", "mrr_10"), "test MRR@10"),
    "valid_ndcg_10": (final_metric("valid", "ndcg_10"), "valid NDCG@10"),
    "train_s_per_epoch": (cost_metric("train_seconds_per_epoch"), "train s/epoch"),
    "train_s_total": (cost_metric("train_seconds_total"), "train s total"),
    "inference_ms_per_target": (cost_metric("inference_ms_per_target"), "inference ms/target"),
    "peak_memory_mb": (cost_metric("peak_memory_mb"), "peak MB"),
    "train_events_per_s": (cost_metric("train_events_per_second"), "train events/s"),
    "parameters": (cost_metric("num_parameters"), "parameters"),
    "best_epoch": ("best_epoch", "best epoch"),
    "epochs_run": ("epochs_run", "epochs"),
}


@dataclass(frozen=True)
class ModelSummary:
    """One model's headline numbers from its MLflow run (a baseline has quality only)."""

    model: str
    run_id: str
    values: dict[str, float]
    bucket_ndcg_10: dict[str, float] = field(default_factory=dict)
    convergence: str = ""
    is_baseline: bool = False
    bucket_ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # 95% interval of each bucket's NDCG@10
    budget: dict[str, str] = field(default_factory=dict)  # the BUDGET_PARAMS its run recorded, e.g. model.max_len

    @classmethod
    def from_run(cls, run: Run) -> ModelSummary:
        tags, params = run.data.tags, run.data.params
        summary = cls.from_metrics(tags[TAG_MODEL], run.info.run_id, run.data.metrics, tags.get(TAG_CONVERGENCE, ""))
        return replace(summary, budget={name: params[name] for name in BUDGET_PARAMS if name in params})

    @classmethod
    def from_metrics(cls, model: str, run_id: str, metrics: dict[str, float], convergence: str = "") -> ModelSummary:
        """A model's row from a run's metrics (or metrics averaged over several runs)."""
        buckets = buckets_in(metrics)
        bucket_ci = {}
        for bucket in buckets:
            bounds = tuple(metrics.get(interval_metric("test", HEADLINE_METRIC, b, bucket)) for b in ("low", "high"))
            if None not in bounds:
                bucket_ci[bucket] = bounds
        return cls(
            model=model,
            run_id=run_id,
            values={column: metrics.get(key, math.nan) for column, (key, _) in COLUMNS.items()},
            bucket_ndcg_10={bucket: metrics[final_metric("test", HEADLINE_METRIC, bucket)] for bucket in buckets},
            convergence=convergence,
            bucket_ci=bucket_ci,
        )

    @property
    def converged(self) -> bool:
        return self.convergence.startswith("converged")

    def interval(self, column: str) -> tuple[float, float] | None:
        """The 95% interval of ``column`` (``test_ndcg_10``, ``test_hr_10``), if known."""
        low, high = self.values.get(f"{column}_ci_low", math.nan), self.values.get(f"{column}_ci_high", math.nan)
        return (low, high) if math.isfinite(low) and math.isfinite(high) else None

    @property
    def num_seeds(self) -> int:
        seeds = self.values.get("num_seeds", math.nan)
        return int(seeds) if math.isfinite(seeds) else 1

    @property
    def warm_start(self) -> str:
        """The registered version its weights started from, ``none``, or empty when its run did not record it."""
        return self.budget.get(PARAM_WARM_START, "")


@dataclass(frozen=True)
class PerTargetResults:
    """The per-target test results found for the compared models and baselines, and why any are missing."""

    found: dict[str, PerTarget] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """The models of one split, best validation NDCG@10 first, the popularity baselines, and the champion
    paired against each of them on the targets they all ranked."""

    models: list[ModelSummary]
    baselines: list[ModelSummary]
    pairings: list[Pairing] = field(default_factory=list)  # champion minus each model and baseline it pairs with
    notes: list[str] = field(default_factory=list)  # what the paired test could not cover, and why
    num_targets: int = 0
    num_users: int = 0

    @property
    def champion(self) -> ModelSummary:
        return self.models[0]

    @property
    def buckets(self) -> list[str]:
        return sorted({bucket for s in self.models + self.baselines for bucket in s.bucket_ndcg_10})

    @property
    def verdict(self) -> Verdict | None:
        """None when the champion has no per-target results: then there is nothing to test."""
        if not self.num_targets:
            return None
        return judge(self.champion.model, {p.model: p.headline for p in self.pairings if not p.is_baseline})

    @property
    def floor(self) -> Verdict | None:
        """The champion against every popularity baseline, each tested on its own (none may hide behind the
        best one's point estimate); None without paired baselines."""
        baselines = {p.model: p.headline for p in self.pairings if p.is_baseline}
        return judge(self.champion.model, baselines) if baselines else None

    @property
    def budget_differences(self) -> dict[str, dict[str, list[str]]]:
        """Each of the ``BUDGET_PARAMS`` on which the models' runs differ: value -> the models trained with it
        (models that did not record the param are left out)."""
        differences = {}
        for name in BUDGET_PARAMS:
            by_value: dict[str, list[str]] = {}
            for s in self.models:
                if name in s.budget:
                    by_value.setdefault(s.budget[name], []).append(s.model)
            if len(by_value) > 1:
                differences[name] = by_value
        return differences

    @property
    def unpaired_models(self) -> list[str]:
        paired = {p.model for p in self.pairings}
        return [s.model for s in self.models[1:] if s.model not in paired]


def newest_runs(runs: list[Run]) -> dict[str, Run]:
    """The newest run of each model (runs come newest first)."""
    newest: dict[str, Run] = {}
    for run in runs:
        newest.setdefault(run.data.tags[TAG_MODEL], run)
    return newest


def compare(runs: list[Run], per_target: PerTargetResults | None = None) -> Comparison:
    """The newest run of each model, the baselines those runs measured, and the paired tests ``per_target``
    allows (without it: point numbers only, as the summary then says)."""
    newest = newest_runs(runs)
    models = sorted(
        (ModelSummary.from_run(run) for run in newest.values()), key=lambda s: -finite(s.values["valid_ndcg_10"])
    )
    baselines = baseline_summaries(next(iter(newest.values()))) if newest else []
    return with_per_target(Comparison(models, baselines), per_target or PerTargetResults())


def baseline_summaries(run: Run) -> list[ModelSummary]:
    """The popularity baselines a training run ranked on its test targets (quality only)."""
    metrics = run.data.metrics
    found = []
    for name in BASELINES:
        values = {column: math.nan for column in COLUMNS}
        for metric in METRICS_AT_10:
            values[f"test_{metric}"] = metrics.get(baseline_metric(name, metric), math.nan)
        if math.isfinite(values["test_ndcg_10"]):
            found.append(ModelSummary(name, "", values, is_baseline=True))
    return found


def with_per_target(comparison: Comparison, results: PerTargetResults) -> Comparison:
    """Intervals for every model with per-target results and the champion paired against each of them; a
    model without them (or ranked on other targets) keeps its point numbers and is named in a note."""
    rows = comparison.models + comparison.baselines
    reference_name = next((s.model for s in rows if s.model in results.found), None)
    if comparison.champion.model in results.found:
        reference_name = comparison.champion.model
    usable: dict[str, PerTarget] = {}
    left_out = []
    for s in rows:
        data = results.found.get(s.model)
        if data is None:
            left_out.append(f"{s.model} ({results.missing.get(s.model, 'no per-target results')})")
        elif not same_targets(data, results.found[reference_name]):
            reference = results.found[reference_name]
            left_out.append(
                f"{s.model} (it ranked other test targets than {reference_name}: "
                f"{targets_in_common(data, reference):,} of {reference.num_targets:,} in common)"
            )
        else:
            usable[s.model] = data
    models = [_with_intervals(s, usable.get(s.model)) for s in comparison.models]
    baselines = [_with_intervals(s, usable.get(s.model)) for s in comparison.baselines]
    champion = comparison.champion.model
    pairings = []
    if champion in usable:
        for s in models[1:] + baselines:
            if s.model in usable:
                pairings.append(pair(usable[champion], s.model, usable[s.model], s.is_baseline))
    notes = []
    if left_out:
        notes.append(f"Point numbers only, no interval and no paired test: {'; '.join(left_out)}.")
    reference = usable.get(champion)
    return Comparison(
        models,
        baselines,
        pairings,
        notes,
        reference.num_targets if reference else 0,
        reference.num_users if reference else 0,
    )


def _with_intervals(summary: ModelSummary, data: PerTarget | None) -> ModelSummary:
    """The summary with its test points, intervals (overall and per bucket) and seed spread recomputed from its
    targets, so that every number shown comes from the data the paired tests use."""
    if data is None:
        return summary
    values = dict(summary.values)
    for metric in PAIRED_METRICS:  # the point from the same targets as its interval and the paired tests
        interval = data.interval(metric)
        values[f"test_{metric}"] = interval.estimate
        values[f"test_{metric}_ci_low"], values[f"test_{metric}_ci_high"] = interval.low, interval.high
    if not summary.is_baseline:
        values["num_seeds"] = float(data.num_seeds)
        if data.num_seeds > 1:
            values["test_ndcg_10_seed_std"] = data.seed_spread(HEADLINE_METRIC).std
    buckets = data.bucket_intervals(HEADLINE_METRIC)
    return replace(
        summary,
        values=values,
        bucket_ndcg_10=summary.bucket_ndcg_10 | {bucket: interval.estimate for bucket, interval in buckets.items()},
        bucket_ci={bucket: (interval.low, interval.high) for bucket, interval in buckets.items()},
    )


def download_per_target(client: MlflowClient, runs: list[Run], folder: Path) -> PerTargetResults:
    """Each compared run's per-target test ranks, and each baseline's from the first run that kept it; a run
    without them (trained before they were logged) or with unreadable ones is named with the reason."""
    newest = newest_runs(runs)
    listed = {run.info.run_id: _per_target_files(client, run) for run in newest.values()}
    wanted: list[tuple[str, Run | None, str]] = [(model, run, TARGET_RANKS_ARTIFACT) for model, run in newest.items()]
    for baseline in BASELINES:
        artifact = baseline_ranks_artifact(baseline)
        holder = next((run for run in newest.values() if artifact in listed[run.info.run_id]), None)
        wanted.append((baseline, holder, artifact))
    found, missing = {}, {}
    for name, run, artifact in wanted:
        if run is None:
            missing[name] = "no compared run kept its per-target results"
        elif artifact not in listed[run.info.run_id]:
            missing[name] = f"run {run.info.run_id[:8]} has no {artifact}: trained before per-target results"
        else:
            destination = folder / run.info.run_id
            destination.mkdir(parents=True, exist_ok=True)
            try:
                found[name] = load_per_target(client.download_artifacts(run.info.run_id, artifact, str(destination)))
            except (OSError, ValueError, KeyError) as error:
                missing[name] = f"{artifact} of run {run.info.run_id[:8]} is unreadable: {error}"
    return PerTargetResults(found, missing)


def _per_target_files(client: MlflowClient, run: Run) -> set[str]:
    folder = Path(TARGET_RANKS_ARTIFACT).parent.as_posix()
    return {info.path for info in client.list_artifacts(run.info.run_id, folder) if not info.is_dir}
