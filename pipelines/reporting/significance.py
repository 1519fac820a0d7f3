"""Whether the comparison's differences are real: the paired tests of the champion against every other model
(over per-target results, ``pipelines/target_results.py``) and what they let the summary say. Every other
model's test is read, not only the closest one's: a model significantly ahead of the champion is named even
when a noisier model has the higher point estimate. The verdict names a winner only when every paired
interval excludes zero with the champion ahead; otherwise the models are tied at this sample size.
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
REVERSED = "reversed"  # some other model is ahead of the validation champion on test, beyond the noise
ALONE = "alone"  # no other model to compare with


@dataclass(frozen=True)
class Verdict:
    """What the paired tests let the summary say about the champion (which validation chose)."""

    kind: str
    champion: str
    closest: str | None  # the model the verdict compares with: the best one ahead, the runner-up, or the best tied
    tied: tuple[str, ...]  # other models whose interval against the champion includes zero, best on test first
    ahead: tuple[str, ...] = ()  # other models ahead of the champion beyond the noise, best on test first


def judge(champion: str, differences: Mapping[str, PairedDifference]) -> Verdict:
    """``differences``: champion minus each other model on the headline metric, each tested on its own (the
    best other model on test, the one with the smallest difference, may be tied while another is ahead)."""
    others = sorted(differences, key=lambda model: differences[model].estimate)
    if not others:
        return Verdict(ALONE, champion, None, ())
    tied = tuple(model for model in others if not differences[model].significant)
    ahead = tuple(model for model in others if differences[model].behind)
    if ahead:
        return Verdict(REVERSED, champion, ahead[0], tied, ahead)
    if not tied:
        return Verdict(WINNER, champion, others[0], tied)
    return Verdict(TIED, champion, tied[0], tied)
