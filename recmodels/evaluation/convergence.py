"""Whether a training run had converged: a comparison of models that were all still improving says little
about which architecture is better, so every report states it next to the metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass

from recmodels.training.loop import FitResult

HEADLINE = "ndcg_10"


@dataclass(frozen=True)
class Convergence:
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    last_gain: float  # relative change of validation NDCG@10 over the last epoch (NaN with fewer than 2 epochs)

    @classmethod
    def of(cls, result: FitResult) -> Convergence:
        curve = [report.valid.get(HEADLINE, math.nan) for report in result.epochs]
        gain = (curve[-1] - curve[-2]) / abs(curve[-2]) if len(curve) >= 2 and curve[-2] else math.nan
        return cls(result.best_epoch, len(result.epochs), result.stopped_early, gain)

    @property
    def converged(self) -> bool:
        """Validation quality peaked before the last epoch (or training stopped on patience)."""
        return self.epochs_run > 0 and (self.stopped_early or self.best_epoch < self.epochs_run)

    def verdict(self) -> str:
        """One line for a user: converged or not, and what to change if not."""
        if self.epochs_run == 0:
            return "not trained (train.epochs is 0)"
        where = f"best epoch {self.best_epoch} of {self.epochs_run}"
        if self.converged:
            return f"converged: {where}" + (", stopped early" if self.stopped_early else "")
        rising = ""
        if math.isfinite(self.last_gain):
            rising = f", validation NDCG@10 still {self.last_gain:+.0%} in the last epoch"
        return f"not converged: {where} is the last{rising}; raise train.epochs"
