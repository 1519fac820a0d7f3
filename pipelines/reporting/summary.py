"""The comparison in words: who won and whether that is beyond the noise (``significance.py``), the champion
against the popularity floor, the cost, and what limits the comparison (unconverged models, differing training
budgets or warm starts, runs without per-target results, the test targets' protocol)."""

from __future__ import annotations

import math

from pipelines.metric_names import BUDGET_PARAMS
from pipelines.reporting.comparison import Comparison, ModelSummary
from pipelines.reporting.numbers import (
    MINUS,
    difference_text,
    finite,
    joined,
    p_text,
    relative,
    rounded,
    with_interval,
)
from pipelines.reporting.significance import ALONE, REVERSED, WINNER, Verdict
from recmodels.evaluation.stats import PairedDifference

SYNTHETIC_DATA = (
    "Data: the embedded synthetic log, with long-range re-consumption planted so that reading the whole history "
    "pays; a verdict on it is no claim about real data."
)


def data_note(source: str) -> str:
    """For the embedded synthetic log (``source`` of its raw_events), what that data is, so that no one reads
    the verdict as a claim about real data; empty for any other source."""
    return SYNTHETIC_DATA if source == "synthetic" else ""


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
    unconverged = _unconverged(comparison)
    if unconverged:
        lines.append(
            f"Not converged: {', '.join(unconverged)} (best epoch = last epoch): the ranking may change with more "
            "epochs; raise train.epochs."
        )
    else:
        lines.append("Every model converged (validation NDCG@10 peaked before its last epoch).")
    if comparison.budget_differences:
        lines.append(_budget_text(comparison))
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
        return (
            f"{champion} wins (provisional: not every model converged)"
            if _unconverged(comparison)
            else f"{champion} wins"
        )
    if verdict.kind == REVERSED:
        return f"validation and test disagree: {joined(verdict.ahead)} ahead of {champion} on test"
    return f"tied: {joined((champion, *verdict.tied))}"


def _unconverged(comparison: Comparison) -> list[str]:
    """The models whose validation metric still rose at their last epoch (the baselines train nothing)."""
    return [s.model for s in comparison.models if not s.converged]


def _point_estimates(comparison: Comparison) -> str:
    """The summary's first sentence when the champion has no per-target results: today's point numbers."""
    champion, others = comparison.champion, comparison.models[1:]
    ndcg = champion.values["test_ndcg_10"]
    line = f"**{champion.model}** wins on validation NDCG@10; test NDCG@10 {ndcg:.4f}"
    if others:
        runner_up = max(others, key=lambda s: finite(s.values["test_ndcg_10"]))
        line += f", {relative(ndcg, runner_up.values['test_ndcg_10'])} vs {runner_up.model}"
    if comparison.baselines:
        floor = max(comparison.baselines, key=lambda s: finite(s.values["test_ndcg_10"]))
        line += f", {relative(ndcg, floor.values['test_ndcg_10'])} vs {floor.model}"
    return line + (
        ". These are point estimates: without per-target results there is no interval and no paired test, so "
        "the margins may be noise."
    )


def _verdict_text(comparison: Comparison, verdict: Verdict) -> str:
    champion = comparison.champion
    point = with_interval(champion.values["test_ndcg_10"], champion.interval("test_ndcg_10"))
    score = f"test NDCG@10 {point}{_seed_text(champion)}"
    scope = f"over {comparison.num_targets:,} targets of {comparison.num_users:,} users"
    among = " among the models with per-target results" if comparison.unpaired_models else ""
    if verdict.kind == ALONE:
        return f"**{champion.model}** is the only model{among}: {score}, {scope}."
    differences = {p.model: p.headline for p in comparison.pairings}
    closest = differences[verdict.closest]
    if verdict.kind == WINNER:
        unconverged = _unconverged(comparison)
        if unconverged:  # a winner only among converged models: more epochs may reorder them
            return (
                f"Provisionally, **{champion.model}** wins{among}: {score}, {difference_text(closest)} vs "
                f"{verdict.closest} ({p_text(closest)}) {scope}; provisional because {joined(unconverged)} did not "
                "converge, so more epochs may change the order."
            )
        return (
            f"**{champion.model}** wins{among}: {score}, {difference_text(closest)} vs {verdict.closest} "
            f"({p_text(closest)}) {scope}."
        )
    if verdict.kind == REVERSED:
        text = (
            f"Validation and test disagree: **{champion.model}** has the best validation NDCG@10 and stays the "
            f"registered champion, but {verdict.closest} is ahead on test NDCG@10 by "
            f"{difference_text(closest, flip=True)} ({p_text(closest)}) {scope}; {champion.model}: {score}."
        )
        if len(verdict.ahead) > 1:
            text += f" {_also_ahead(verdict.ahead[1:], champion.model)}"
        if verdict.tied:
            text += f" {champion.model} is statistically tied with {joined(verdict.tied)}."
        return text
    return _tied_text(comparison, verdict, differences, score, scope)


def _tied_text(
    comparison: Comparison, verdict: Verdict, differences: dict[str, PairedDifference], score: str, scope: str
) -> str:
    champion, other = verdict.champion, verdict.closest
    closest = differences[other]
    text = (
        f"No winner{' among the models with per-target results' if comparison.unpaired_models else ''}: "
        f"{joined((champion, *verdict.tied))} are statistically tied on test NDCG@10 ({champion} {MINUS} {other} "
        f"{difference_text(closest)}, {p_text(closest)}, {scope}); {_needed_text(closest, champion, other)}"
    )
    text += f" {champion}, chosen on validation NDCG@10, stays the registered champion: {score}."
    if closest.estimate < 0:
        text += f" {other} scores higher on test, but within the noise."
    beaten = [p.model for p in comparison.pairings if not p.is_baseline and p.headline.ahead]
    if beaten:
        text += f" {champion} is ahead of {joined(beaten)} beyond the noise."
    return text


def _needed_text(difference: PairedDifference, champion: str, other: str) -> str:
    """How many users would separate the two models if the difference held (intervals shrink as 1/sqrt(n))."""
    needed = difference.users_needed()
    if needed is None:
        return f"{champion} and {other} rank these targets equally well on average: more users would not separate them."
    factor = needed / difference.num_users
    return (
        f"about {factor:.{0 if factor >= 10 else 1}f}x as many users (~{rounded(needed)} instead of "
        f"{difference.num_users:,}) would be needed to separate {champion} and {other} if the difference held, "
        "or more training seeds."
    )


def _also_ahead(models: tuple[str, ...], champion: str) -> str:
    return f"{joined(models)} {'is' if len(models) == 1 else 'are'} also ahead of {champion} beyond the noise."


def _floor_text(comparison: Comparison) -> str:
    """The champion against the popularity baselines: above all of them, below any one, or not distinguishable
    from the best tied one."""
    floor = comparison.floor
    if floor is None:
        return ""
    champion, baseline = floor.champion, floor.closest
    difference = next(p.headline for p in comparison.pairings if p.is_baseline and p.model == baseline)
    if floor.kind == WINNER:
        return (
            f"{champion} is above the popularity floor: {difference_text(difference)} vs {baseline} "
            f"({p_text(difference)})."
        )
    if floor.kind == REVERSED:
        text = (
            f"{champion} is below the popularity floor: {baseline} is ahead by "
            f"{difference_text(difference, flip=True)} ({p_text(difference)})."
        )
        return text + (f" {_also_ahead(floor.ahead[1:], champion)}" if len(floor.ahead) > 1 else "")
    return (
        f"{champion} is not distinguishable from the popularity floor: {difference_text(difference)} vs {baseline} "
        f"({p_text(difference)})."
    )


def _budget_text(comparison: Comparison) -> str:
    """The training settings on which the models differ, each value with the models trained with it."""
    parts = []
    for name, by_value in comparison.budget_differences.items():
        values = " vs ".join(f"{value} ({', '.join(models)})" for value, models in by_value.items())
        parts.append(f"{BUDGET_PARAMS[name]} {values}")
    return (
        f"Training budgets differ, so the ranking may reflect them rather than the architectures: {'; '.join(parts)}."
    )


def _cost_text(comparison: Comparison) -> str:
    champion, values = comparison.champion, comparison.champion.values
    cost = (
        f"Cost: {values['train_s_per_epoch']:.3g} s/epoch to train, {values['inference_ms_per_target']:.3g} ms/target "
        f"to rank, peak {values['peak_memory_mb']:.0f} MB"
    )
    if len(comparison.models) > 1:
        cheapest = min(comparison.models, key=lambda s: finite(s.values["train_s_per_epoch"], math.inf))
        if cheapest is champion:
            cost += " (the fastest to train)"
        else:
            cost += f" (fastest to train: {cheapest.model}, {cheapest.values['train_s_per_epoch']:.3g} s/epoch)"
    return cost + "."


def _seed_text(summary: ModelSummary) -> str:
    std = summary.values.get("test_ndcg_10_seed_std", math.nan)
    if summary.num_seeds < 2 or not math.isfinite(std):
        return ""
    return f" ({summary.values['test_ndcg_10']:.4f} ± {std:.4f} over {summary.num_seeds} seeds)"
