"""What a training run costs: time per epoch (forward + backward + optimizer step), evaluation time,
peak memory, throughput and model size, reported with every run."""

from __future__ import annotations

import dataclasses
import resource
import sys
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CostReport:
    train_seconds_per_epoch: float
    train_seconds_total: float
    eval_seconds: float
    peak_memory_mb: float
    train_events_per_second: float
    num_parameters: int

    def as_metrics(self) -> dict[str, float]:
        """The fields as floats under their own names (letters and underscores: MLflow-safe)."""
        return {f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _max_rss_mb() -> float:
    """The process's peak resident set size so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class PeakMemory:
    """Peak memory of a stretch of work: CUDA max allocated, or on CPU the rise of the process's peak RSS.

    ru_maxrss never goes down, so on CPU we report its increase over the value when the meter started;
    memory freed before the start and reused later is not counted (an underestimate, never an over-).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.start_mb = _max_rss_mb()

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return max(0.0, _max_rss_mb() - self.start_mb)
