"""Keep large freed blocks in the process between training steps instead of handing them back to the OS.

Why: glibc serves every allocation above its mmap threshold (32 MB at most, by default) with a fresh
mapping and unmaps it on free, so each training step maps, page-faults and zeroes its largest tensors
(full-catalogue logits, activations) all over again. Measured on a 2-core CPU (RecMamba and SASRec, 2
layers, batch 16, length 512, 3000 items): a third of a step's wall time was such page faults (sys time),
and raising the thresholds made steps 35% faster. Peak memory is unchanged; the process only stops
shrinking between steps, which a training process does not need.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
LARGEST = 2**31 - 1  # mallopt takes an int


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where that is not possible (not
    Linux, or a C library without ``mallopt``, such as musl's no-op one)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, LARGEST)) and bool(mallopt(M_TRIM_THRESHOLD, LARGEST))
