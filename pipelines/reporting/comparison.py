"""Turns the training runs of one split into a comparison a reviewer can trust at a glance: who won and by how
much with its uncertainty, at what training and inference cost, whether training had converged, and how far
above the popularity floor.

The champion is chosen on validation NDCG@10 (test is reported, never used to choose). Whether it *won* is
decided on test, by paired tests over the targets every model ranked (``significance.py``): a winner is
named only when its lead is beyond the noise; otherwise the summary says which models are tied.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run

from pipelines.metric_names import (
    HEADLINE_METRIC,
    METRICS_AT_10,
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
from pipelines.reporting.significance import ALONE, REVERSED, WINNER, Pairing, Verdict, judge, pair
from pipelines.target_results import PAIRED_METRICS, PerTarget, load_per_target, same_targets, targets_in_common
from recmodels.evaluation.baselines import BASELINES
from recmodels.evaluation.stats import PairedDifference

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
TABLE_COLUMNS = (
    "test_ndcg_10",
    "test_hr_10",
    "valid_ndcg_10",
    "train_s_per_epoch",
    "inference_ms_per_target",
    "peak_memory_mb",
    "parameters",
)
MINUS = "\u2212"  # a typographic minus: "−0.012" reads as a number, "-0.012" as a dash


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

    @classmethod
    def from_run(cls, run: Run) -> ModelSummary:
        tags = run.data.tags
        return cls.from_metrics(tags[TAG_MODEL], run.info.run_id, run.data.metrics, tags.get(TAG_CONVERGENCE, ""))

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
    def floor(self) -> Pairing | None:
        """The champion against the best popularity baseline on test."""
        baselines = [p for p in self.pairings if p.is_baseline]
        return min(baselines, key=lambda p: p.headline.estimate) if baselines else None

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
        (ModelSummary.from_run(run) for run in newest.values()), key=lambda s: -_finite(s.values["valid_ndcg_10"])
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


def headline(comparison: Comparison, protocol: str = "") -> str:
    """Who won and whether that is beyond the noise, the popularity floor, the cost, whether the comparison
    can be trusted (convergence, runs without per-target results), and which events were the targets
    (``protocol``, e.g. ``global_time split, sample_per_user(10, seed 0)``)."""
    verdict = comparison.verdict
    if verdict is None:
        lines = [_point_estimates(comparison)]
    else:
        lines = [_verdict_text(comparison, verdict)]
        floor = _floor_text(comparison)
        if floor:
            lines[0] += " " + floor
    lines.append(_cost_text(comparison))
    unconverged = [s.model for s in comparison.models if not s.converged]
    if unconverged:
        lines.append(
            f"Not converged: {', '.join(unconverged)} (best epoch = last epoch): the ranking may change with more "
            "epochs; raise train.epochs."
        )
    else:
        lines.append("Every model converged (validation NDCG@10 peaked before its last epoch).")
    lines.extend(comparison.notes)
    if protocol:
        lines.append(f"Test targets: {protocol}.")
    return "\n\n".join(lines)


def verdict_label(comparison: Comparison) -> str:
    """The verdict in a few words, for the asset's metadata and the run's tags."""
    verdict = comparison.verdict
    if verdict is None:
        return "point estimates only (no per-target results)"
    champion = verdict.champion
    if verdict.kind == ALONE:
        return f"{champion} (the only model)"
    if verdict.kind == WINNER:
        return f"{champion} wins"
    if verdict.kind == REVERSED:
        return f"validation and test disagree: {verdict.closest} ahead of {champion} on test"
    return f"tied: {_names((champion, *verdict.tied))}"


def _point_estimates(comparison: Comparison) -> str:
    """The summary's first sentence when the champion has no per-target results: today's point numbers."""
    champion, others = comparison.champion, comparison.models[1:]
    ndcg = champion.values["test_ndcg_10"]
    line = f"**{champion.model}** wins on validation NDCG@10; test NDCG@10 {ndcg:.4f}"
    if others:
        runner_up = max(others, key=lambda s: _finite(s.values["test_ndcg_10"]))
        line += f", {_relative(ndcg, runner_up.values['test_ndcg_10'])} vs {runner_up.model}"
    if comparison.baselines:
        floor = max(comparison.baselines, key=lambda s: _finite(s.values["test_ndcg_10"]))
        line += f", {_relative(ndcg, floor.values['test_ndcg_10'])} vs {floor.model}"
    return line + (
        ". These are point estimates: without per-target results there is no interval and no paired test, so "
        "the margins may be noise."
    )


def _verdict_text(comparison: Comparison, verdict: Verdict) -> str:
    champion = comparison.champion
    score = f"test NDCG@10 {_with_ci(champion, 'test_ndcg_10')}{_seed_text(champion)}"
    scope = f"over {comparison.num_targets:,} targets of {comparison.num_users:,} users"
    among = " among the models with per-target results" if comparison.unpaired_models else ""
    if verdict.kind == ALONE:
        return f"**{champion.model}** is the only model{among}: {score}, {scope}."
    differences = {p.model: p.headline for p in comparison.pairings}
    closest = differences[verdict.closest]
    if verdict.kind == WINNER:
        return (
            f"**{champion.model}** wins{among}: {score}, {_difference(closest)} vs {verdict.closest} "
            f"({_p(closest)}) {scope}."
        )
    if verdict.kind == REVERSED:
        text = (
            f"Validation and test disagree: **{champion.model}** has the best validation NDCG@10 and stays the "
            f"registered champion, but {verdict.closest} is ahead on test NDCG@10 by "
            f"{_difference(closest, flip=True)} ({_p(closest)}) {scope}; {champion.model}: {score}."
        )
        if verdict.tied:
            text += f" {champion.model} is statistically tied with {_names(verdict.tied)}."
        return text
    return _tied_text(comparison, verdict, differences, score, scope)


def _tied_text(
    comparison: Comparison, verdict: Verdict, differences: dict[str, PairedDifference], score: str, scope: str
) -> str:
    champion, other = verdict.champion, verdict.closest
    closest = differences[other]
    text = (
        f"No winner{' among the models with per-target results' if comparison.unpaired_models else ''}: "
        f"{_names((champion, *verdict.tied))} are statistically tied on test NDCG@10 ({champion} {MINUS} {other} "
        f"{_difference(closest)}, {_p(closest)}, {scope}); {_needed_text(closest, champion, other)}"
    )
    text += f" {champion}, chosen on validation NDCG@10, stays the registered champion: {score}."
    if closest.estimate < 0:
        text += f" {other} scores higher on test, but within the noise."
    beaten = [p.model for p in comparison.pairings if not p.is_baseline and p.headline.ahead]
    if beaten:
        text += f" {champion} is ahead of {_names(beaten)} beyond the noise."
    return text


def _needed_text(difference: PairedDifference, champion: str, other: str) -> str:
    """How many users would separate the two models if the difference held (intervals shrink as 1/sqrt(n))."""
    needed = difference.users_needed()
    if needed is None:
        return f"{champion} and {other} rank these targets equally well on average: more users would not separate them."
    factor = needed / difference.num_users
    return (
        f"about {factor:.{0 if factor >= 10 else 1}f}x as many users (~{_round(needed)} instead of "
        f"{difference.num_users:,}) would be needed to separate {champion} and {other} if the difference held, "
        "or more training seeds."
    )


def _floor_text(comparison: Comparison) -> str:
    floor = comparison.floor
    if floor is None:
        return ""
    champion, difference = comparison.champion.model, floor.headline
    if difference.ahead:
        return (
            f"{champion} is above the popularity floor: {_difference(difference)} vs {floor.model} ({_p(difference)})."
        )
    if difference.behind:
        return (
            f"{champion} is below the popularity floor: {floor.model} is ahead by {_difference(difference, flip=True)} "
            f"({_p(difference)})."
        )
    return (
        f"{champion} is not distinguishable from the popularity floor: {_difference(difference)} vs {floor.model} "
        f"({_p(difference)})."
    )


def _cost_text(comparison: Comparison) -> str:
    champion, values = comparison.champion, comparison.champion.values
    cost = (
        f"Cost: {values['train_s_per_epoch']:.3g} s/epoch to train, {values['inference_ms_per_target']:.3g} ms/target "
        f"to rank, peak {values['peak_memory_mb']:.0f} MB"
    )
    if len(comparison.models) > 1:
        cheapest = min(comparison.models, key=lambda s: _finite(s.values["train_s_per_epoch"], math.inf))
        if cheapest is champion:
            cost += " (the fastest to train)"
        else:
            cost += f" (fastest to train: {cheapest.model}, {cheapest.values['train_s_per_epoch']:.3g} s/epoch)"
    return cost + "."


def markdown_table(comparison: Comparison) -> str:
    """One row per model and baseline; test NDCG@10 with its 95% interval, and the seed spread when a model
    was trained with several seeds."""
    rows = comparison.models + comparison.baselines
    with_seeds = any(s.num_seeds > 1 for s in rows)
    headers = [COLUMNS[column][1] for column in TABLE_COLUMNS]
    headers[0] += " [95% CI]"
    header = ["model", *headers, *(["seed std (seeds)"] if with_seeds else []), "converged"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in rows:
        converged = "baseline" if s.is_baseline else ("yes" if s.converged else "**no**")
        cells = [s.model, _with_ci(s, "test_ndcg_10"), *(_format(s.values[column]) for column in TABLE_COLUMNS[1:])]
        if with_seeds:
            std = s.values["test_ndcg_10_seed_std"]
            cells.append(f"± {std:.4f} ({s.num_seeds})" if s.num_seeds > 1 and math.isfinite(std) else "–")
        lines.append("| " + " | ".join([*cells, converged]) + " |")
    return "\n".join(lines)


def paired_markdown(comparison: Comparison) -> str:
    """The champion minus each model on the same targets, with intervals and p-values; empty without pairs."""
    if not comparison.pairings:
        return ""
    champion = comparison.champion.model
    header = [f"{champion} {MINUS}", "test NDCG@10 [95% CI]", "p", "test HR@10 [95% CI]", "p", "on test NDCG@10"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in comparison.pairings:
        ndcg, hr = p.differences["ndcg_10"], p.differences["hr_10"]
        name = f"{p.model} (baseline)" if p.is_baseline else p.model
        cells = [name, _difference(ndcg), _p(ndcg, bare=True), _difference(hr), _p(hr, bare=True), _side(p, champion)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"{champion} minus each model on the same {comparison.num_targets:,} test targets of "
        f"{comparison.num_users:,} users (each target's metric averaged over a model's seeds); 95% user-bootstrap "
        "intervals; p from a paired sign-flip permutation test over users."
    )
    return "\n".join(lines)


def _side(pairing: Pairing, champion: str) -> str:
    difference = pairing.headline
    if difference.ahead:
        return f"{champion} ahead"
    if difference.behind:
        return f"**{pairing.model} ahead**"
    return "tied"


def table_columns(comparison: Comparison) -> dict[str, list]:
    """The comparison as columns (for ``mlflow.log_table`` and the CSV): empty cells, never NaN."""
    rows = comparison.models + comparison.baselines
    columns: dict[str, list] = {"model": [s.model for s in rows], "run_id": [s.run_id for s in rows]}
    for column in COLUMNS:
        columns[column] = [_cell(s.values[column]) for s in rows]
    columns["convergence"] = [s.convergence or ("baseline" if s.is_baseline else "") for s in rows]
    for bucket in comparison.buckets:
        columns[f"test_ndcg_10_{bucket}"] = [_cell(s.bucket_ndcg_10.get(bucket, math.nan)) for s in rows]
        for index, bound in enumerate(("low", "high")):
            cis = [s.bucket_ci.get(bucket, (math.nan, math.nan))[index] for s in rows]
            columns[f"test_ndcg_10_{bucket}_ci_{bound}"] = [_cell(value) for value in cis]
    return columns


def paired_columns(comparison: Comparison) -> dict[str, list]:
    """One row per (model, metric): the champion minus that model, for ``mlflow.log_table`` and the CSV."""
    columns: dict[str, list] = {
        name: []
        for name in ("champion", "model", "is_baseline", "metric", "difference", "ci_low", "ci_high", "p_value")
    }
    columns |= {"num_targets": [], "num_users": [], "significant": []}
    for p in comparison.pairings:
        for metric, d in p.differences.items():
            row = [comparison.champion.model, p.model, p.is_baseline, f"test_{metric}", d.estimate, d.low, d.high]
            row += [d.p_value, d.num_targets, d.num_users, d.significant]
            for name, value in zip(columns, row, strict=True):
                columns[name].append(value)
    return columns


def write_csv(comparison: Comparison, path: Path) -> Path:
    return _write_columns(table_columns(comparison), path)


def write_paired_csv(comparison: Comparison, path: Path) -> Path:
    return _write_columns(paired_columns(comparison), path)


def _write_columns(columns: dict[str, list], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values(), strict=True))
    return path


def comparison_metrics(comparison: Comparison) -> dict[str, float]:
    """``<model>/<column>`` for every finite number and ``paired/<model>/<metric>_diff...`` for every pair:
    the comparison run can be charted and searched."""
    metrics = {}
    for summary in comparison.models + comparison.baselines:
        for column, value in summary.values.items():
            if math.isfinite(value):
                metrics[f"{summary.model}/{column}"] = value
    for p in comparison.pairings:
        for metric, d in p.differences.items():
            prefix = f"paired/{p.model}/{metric}"
            values = {"_diff": d.estimate, "_diff_ci_low": d.low, "_diff_ci_high": d.high, "_p_value": d.p_value}
            metrics |= {f"{prefix}{suffix}": value for suffix, value in values.items() if math.isfinite(value)}
    return metrics


def _with_ci(summary: ModelSummary, column: str) -> str:
    """``0.1643 [0.151, 0.178]``, or the point alone when no interval is known."""
    value, interval = summary.values[column], summary.interval(column)
    if interval is None or not math.isfinite(value):
        return _format(value)
    return f"{value:.4f} {_bounds(*interval)}"


def _seed_text(summary: ModelSummary) -> str:
    std = summary.values.get("test_ndcg_10_seed_std", math.nan)
    if summary.num_seeds < 2 or not math.isfinite(std):
        return ""
    return f" ({summary.values['test_ndcg_10']:.4f} ± {std:.4f} over {summary.num_seeds} seeds)"


def _difference(difference: PairedDifference, flip: bool = False) -> str:
    """``+0.0580 [0.041, 0.075]``; ``flip`` gives the other model minus the champion."""
    sign = -1.0 if flip else 1.0
    estimate = sign * difference.estimate
    low, high = sorted((sign * difference.low, sign * difference.high))
    return f"{_signed(estimate)} {_bounds(low, high)}"


def _bounds(low: float, high: float) -> str:
    """Interval bounds to two significant digits of the interval's width (at least three decimals)."""
    width = high - low
    decimals = 3 if width < 1e-9 else min(6, max(3, 1 - math.floor(math.log10(width))))  # 1e-9: rounding noise
    return f"[{_minus(f'{low:.{decimals}f}')}, {_minus(f'{high:.{decimals}f}')}]"


def _signed(value: float) -> str:
    return _minus(f"{value:+.4f}")


def _minus(text: str) -> str:
    return text.replace("-", MINUS)


def _p(difference: PairedDifference, bare: bool = False) -> str:
    """``p = 0.64``, ``p = 0.003``, ``p < 0.001``; ``bare`` without the ``p``."""
    p_value = difference.p_value
    text = "< 0.001" if p_value < 0.001 else f"= {p_value:.2f}" if p_value >= 0.01 else f"= {p_value:.3f}"
    return text.removeprefix("= ") if bare else f"p {text}"


def _names(names: tuple[str, ...] | list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _round(value: float) -> str:
    """Two significant digits with thousands separators: 1234 -> 1,200."""
    digits = max(0, math.floor(math.log10(value)) - 1) if value > 0 else 0
    return f"{round(value, -digits):,.0f}"


def _relative(value: float, other: float) -> str:
    if not (math.isfinite(value) and math.isfinite(other)) or other == 0:
        return "n/a"
    return f"{(value - other) / other:+.1%}"


def _cell(value: float) -> float | str:
    return value if math.isfinite(value) else ""


def _finite(value: float, default: float = -math.inf) -> float:
    return value if math.isfinite(value) else default


def _format(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    if float(value).is_integer() and abs(value) >= 10:
        return f"{value:,.0f}"
    return f"{value:.4f}" if abs(value) < 1 else f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
