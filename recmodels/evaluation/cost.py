"""What a training run costs: time per epoch (forward + backward + optimizer step), evaluation time,
peak memory, throughput, model size and the one-off kernel compile, reported with every run."""

from __future__ import annotations

import dataclasses
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


@dataclass(frozen=True)
class CostReport:
    train_seconds_per_epoch: float
    train_seconds_total: float
    eval_seconds: float
    peak_memory_mb: float
    train_events_per_second: float
    num_parameters: int
    # One-off JIT compile / kernel load paid before training (``recmodels.training.warmup``), kept out of the epochs.
    compile_seconds: float = 0.0
    # Kernel signatures compiled inside the training process (0 when they came from the warm cache).
    kernels_compiled: int = 0

    def as_metrics(self) -> dict[str, float]:
        """The fields as floats under their own names (letters and underscores: MLflow-safe)."""
        return {f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)}


def max_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """The peak resident set size so far of this process, or with ``resource.RUSAGE_CHILDREN`` of the largest
    child waited for (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(who).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _status_mb(field: str) -> float:
    """A ``kB`` line of /proc/self/status (VmHWM, VmRSS) in MB."""
    for line in STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 2**10
    raise OSError(f"{STATUS} has no {field} line")


def _reset_peak_rss() -> bool:
    """Set the process's peak RSS (VmHWM) back to its current RSS; False where the kernel refuses.

    Writing 5 to clear_refs does exactly that (Linux >= 4.0, proc(5)); other systems have no such file,
    and some containers mount /proc read-only.
    """
    try:
        CLEAR_REFS.write_text("5")
        _status_mb("VmHWM")
    except OSError:
        return False
    return True


class PeakMemory:
    """Peak memory of one stretch of work, from the start (or the last ``reset()``) to ``peak_mb()``.

    ``method`` says what is measured:
      - ``"cuda"``: ``torch.cuda.max_memory_allocated`` since ``reset_peak_memory_stats``;
      - ``"vmhwm"`` (Linux CPU): how far the process's resident set size rose above ``start_mb`` (what was
        resident at the start: interpreter, libraries, data, weights) during the stretch. Starting the
        meter resets the kernel's high-water mark (VmHWM) to the current RSS, so memory used and freed
        before the start is not counted, and one process can measure several models one after another;
      - ``"ru_maxrss_rise"`` (where clear_refs cannot be written: macOS, locked-down containers): the rise
        of ``ru_maxrss`` over its value at the start. ru_maxrss never goes down, so memory freed before
        the start and reused during the stretch is missed: an underestimate, never an overestimate, and
        a later stretch cannot be measured once an earlier one has raised the mark.

    The high-water mark is per process: two meters running at once in one process reset each other.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = "cuda" if device.type == "cuda" else "vmhwm" if _reset_peak_rss() else "ru_maxrss_rise"
        self.start_mb = 0.0
        self.reset()

    def reset(self) -> None:
        """Start a new stretch: forget every peak reached so far."""
        if self.method == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_mb = torch.cuda.memory_allocated(self.device) / 2**20
        elif self.method == "vmhwm":
            _reset_peak_rss()
            self.start_mb = _status_mb("VmRSS")
        else:
            self.start_mb = max_rss_mb()

    def peak_mb(self) -> float:
        if self.method == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.method == "vmhwm":
            return max(0.0, _status_mb("VmHWM") - self.start_mb)
        return max(0.0, max_rss_mb() - self.start_mb)
