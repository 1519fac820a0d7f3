"""One thread budget for torch and Numba, so that their two thread pools do not fight over the cores.

RecMamba's CPU training alternates between torch ops and the fused Numba kernels. The kernels are called
from the Python thread between torch ops, never from inside a torch parallel region (measured: every
call is on the main thread), so there is no nesting to undo. What there is: two OpenMP runtimes, torch's
bundled libgomp and the system libgomp under Numba's ``omp`` threading layer, each with its own worker
pool. A libgomp worker busy-waits for a while after each parallel region before it sleeps, so while one
runtime works, the other's idle workers still hold cores; with a few cores, or any other load on them,
that spinning costs more than the work. Measured (``benchmarks/thread_budget.py``, 10 RecMamba training
steps on 2 cores another process was also using): 20.2 s wall by default, 6.8 s with passive waiting in
both runtimes, 20.2 s with it in Numba's alone; on idle cores all three ~3.1-3.4 s. The sys time is not
from threads: it follows the minor page faults of large buffers that glibc unmaps and maps again.

So: one thread count for both (the cores this process may use). Passive waiting
(``OMP_WAIT_POLICY=PASSIVE``, read by each libgomp when it loads, so it must be in the environment a
process starts with) cures the spinning under load but costs every short parallel region a wake-up:
measured on the synthetic default, one GRU4Rec epoch takes 26.9 s with it against 16.0 s without, SASRec
19.9 s against 18.9 s. Training steps run one at a time here, so it is not the default; set it yourself
when training shares its cores with other work.
"""

from __future__ import annotations

import os

import torch


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), capped by ``OMP_NUM_THREADS`` when that is set
    (torchrun sets it to 1 per process when it starts several)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    return max(1, min(cores, int(limit))) if limit.isdigit() and int(limit) > 0 else cores


def apply_thread_budget(threads: int | None = None) -> int:
    """Give torch and Numba the same ``threads`` (default ``available_cores()``); return the count. Call it
    once per process before the first training step."""
    count = max(1, threads or available_cores())
    torch.set_num_threads(count)
    try:
        import numba
    except ImportError:  # no compiled CPU kernels here: torch's budget is the whole budget
        return count
    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    return count
