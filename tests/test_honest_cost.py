"""Cost figures measure the model, never the one-off kernel compile: a training run on a fresh Numba cache
reports the same epoch time and peak memory as one on a warm cache (the compile happens in a process of its
own before training, and is reported apart as compile time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from recmodels.data import write_split_export

# Smoke scale: epochs long enough (~1 s) that 10% is well above the timer's noise on a quiet machine.
ARGS = ["--train.epochs", "3", "--train.batch_size", "16", "--train.patience", "0", "--train.eval_max_targets", "50",
        "--model.d_model", "64", "--model.n_layers", "1", "--model.max_len", "128"]  # fmt: skip


def train_recmamba(export: Path, out: Path, cache: Path) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    command = [sys.executable, "-m", "recmodels.train", "recmamba", "--export", str(export), "--out", str(out), *ARGS]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    # The fastest epoch: a machine's hiccup in one epoch says nothing about what the run measured.
    return {**result["cost"], "fastest_epoch_seconds": min(epoch["epoch_seconds"] for epoch in result["epochs"])}


def test_a_fresh_kernel_cache_does_not_change_the_reported_cost(tmp_path):
    histories = [[(user * 7 + t) % 300 + 1 for t in range(400)] for user in range(160)]
    splits = [[0] * 390 + [1] * 5 + [2] * 5 for _ in histories]
    export = write_split_export(tmp_path / "export", histories, splits, num_items=300)
    cache = tmp_path / "numba_cache"
    fresh = train_recmamba(export, tmp_path / "fresh", cache)
    warm = train_recmamba(export, tmp_path / "warm", cache)
    assert fresh["peak_memory_mb"] <= 1.1 * warm["peak_memory_mb"], (fresh, warm)
    assert fresh["fastest_epoch_seconds"] <= 1.1 * warm["fastest_epoch_seconds"], (fresh, warm)
    assert any(cache.rglob("*.nbi")), "the first run compiled into the fresh cache"
    # Both training processes only loaded the kernels: the compile happened in a process of its own.
    assert fresh["compile_seconds"] < 5.0 and warm["compile_seconds"] < 5.0, (fresh, warm)
