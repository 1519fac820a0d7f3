"""Whether the comparison's differences are real: the paired tests of the champion against every other model
(over per-target results, ``pipelines/target_results.py``) and what they let the summary say. The verdict
names a winner only when the paired interval against the closest model excludes zero; otherwise the models
are tied at this sample size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipelines.target_results import PAIRED_METRICS, PerTarget, paired
from recmodels.evaluation.stats import PairedDifference


@dataclass(frozen=True)
class Pairing:
    """The champion minus one other model (or popularity baseline) on the same test targets."""

    model: str
    is_baseline: bool
    differences: dict[str, PairedDifference]  # metric -> champion minus model

    @property
    def headline(self) -> PairedDifference:
        return self.differences[PAIRED_METRICS[0]]


def pair(champion: PerTarget, model: str, other: PerTarget, is_baseline: bool = False) -> Pairing:
    return Pairing(model, is_baseline, {metric: paired(champion, other, metric) for metric in PAIRED_METRICS})


WINNER = "winner"  # ahead of every other model, each interval excluding zero
TIED = "tied"  # some other model's interval against the champion includes zero
REVERSED = "reversed"  # another model is ahead of the validation champion on test, beyond the noise
ALONE = "alone"  # no other model to compare with


@dataclass(frozen=True)
class Verdict:
    """What the paired tests let the summary say about the champion (which validation chose)."""

    kind: str
    champion: str
    closest: str | None  # the model the verdict compares with: the runner-up on test, or the best tied one
    tied: tuple[str, ...]  # other models whose interval against the champion includes zero, best on test first


def judge(champion: str, differences: Mapping[str, PairedDifference]) -> Verdict:
    """``differences``: champion minus each other model on the headline metric. The runner-up is the best
    other model on test, i.e. the one with the smallest difference."""
    others = sorted(differences, key=lambda model: differences[model].estimate)
    if not others:
        return Verdict(ALONE, champion, None, ())
    runner_up = differences[others[0]]
    tied = tuple(model for model in others if not differences[model].significant)
    if runner_up.behind:
        return Verdict(REVERSED, champion, others[0], tied)
    if runner_up.ahead and not tied:
        return Verdict(WINNER, champion, others[0], tied)
    return Verdict(TIED, champion, tied[0], tied)
