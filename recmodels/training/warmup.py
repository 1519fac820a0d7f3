"""Pay the one-off kernel compile before the cost meter starts, so epoch times and peak memory are honest.

RecMamba's CPU path runs Numba kernels (``recmodels/ops/cpu_kernels.py``) that compile lazily, per type
signature, on their first call: the forward ones (conv_silu_forward, scan_forward) on the first forward
pass, the backward ones (scan_backward, conv_silu_backward) on the first backward; LRURec's scan
(``recmodels/ops/lru_scan.py``) and HSTU's attention weights (``recmodels/ops/pointwise_attention.py``)
likewise. Every model's evaluation
runs the ranking kernels of ``recmodels/evaluation/topk.py``, compiled the same way on the first ranking.
With a fresh on-disk cache that is tens of seconds and a few hundred MB of compiler memory, which would
otherwise land in the first epoch and in the peak. The signature depends only on dtypes, ranks and layouts,
never on sizes, so one forward + backward on a tiny batch compiles (or loads from the cache) everything
training needs.

``python -m recmodels.training.warmup`` fills the on-disk cache (``NUMBA_CACHE_DIR`` or next to the kernels)
in a process of its own, so that later training processes only load it (under a second instead of ~30 s). That
matters for memory too: LLVM's memory stays resident in the process that compiled (measured: ~170 MB more
RSS before training), so only a compile in another process keeps it out of the training peak.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numba
import numpy as np
import torch
import torch.nn.functional as F

from recmodels.evaluation.topk import SeenItems, blockwise_ranks, blockwise_topk
from recmodels.models.base import SequentialRecommender

RECMODELS = Path(__file__).resolve().parents[1]


def warm_up(model: SequentialRecommender, device: torch.device, batch_size: int = 2, length: int = 16) -> float:
    """Run one forward + backward of ``model`` on a random batch on ``device``; return its seconds.

    The model comes back as it went in: same weights, buffers, gradients and train/eval mode, and the
    global RNG streams are untouched (the batch has its own generator; dropout runs under a forked RNG),
    so a seeded run after a warm-up equals one without. Mirrors training: train mode, and bfloat16
    autocast on CUDA as ``recmodels.training.loop`` does.
    """
    device = torch.device(device)
    length = min(length, model.config.max_len)
    generator = torch.Generator().manual_seed(0)
    items = torch.randint(1, model.num_items + 1, (batch_size, length), generator=generator).to(device)
    targets = torch.randint(1, model.num_items + 1, (batch_size, length), generator=generator).to(device)
    parameters = list(model.parameters())
    saved_grads = [parameter.grad for parameter in parameters]
    saved_buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    was_training = model.training
    cuda_devices = [device] if device.type == "cuda" else []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    began = time.perf_counter()
    try:
        for parameter in parameters:
            parameter.grad = None  # backward writes fresh tensors; the caller's are put back below
        with torch.random.fork_rng(devices=cuda_devices):
            model.train()
            with autocast:
                timed = (torch.arange(length, device=device).expand_as(items) * 1000,) if model.uses_timestamps else ()
                logits = model.scores(model(items, *timed))  # (B, L, num_items + 1)
                loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
            loss.backward()
        _rank_once(model, device, generator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - began
    finally:
        for parameter, grad in zip(parameters, saved_grads, strict=True):
            parameter.grad = grad
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(saved_buffers[name])
        model.train(was_training)


@torch.no_grad()
def _rank_once(model: SequentialRecommender, device: torch.device, generator: torch.Generator) -> None:
    """Rank and take the top 10 of a random batch against the model's own catalogue: what evaluation runs."""
    weight = model.item_embedding.weight.detach()
    hidden = torch.randn(2, weight.shape[1], generator=generator).to(device=device, dtype=weight.dtype)
    targets = torch.randint(1, model.num_items + 1, (2,), generator=generator).to(device)
    seen = SeenItems([np.array([1]), np.array([], np.int64)], device)
    blockwise_ranks(hidden, weight, targets, seen)
    blockwise_topk(hidden, weight, min(10, model.num_items), seen)


def compiled_here(dispatchers: Iterable[numba.core.dispatcher.Dispatcher]) -> int:
    """How many signatures of ``dispatchers`` this process compiled itself rather than loaded from Numba's
    on-disk cache."""
    return sum(len(kernel.overloads) - sum(kernel.stats.cache_hits.values()) for kernel in dispatchers)


def kernels_compiled_here() -> int:
    """How many kernel signatures (RecMamba's and LRURec's scans, HSTU's attention weights, the ranking) this
    process compiled itself rather than loaded from the cache. Zero after a warm cache means the compiler's
    seconds and memory stayed out of this process's meters; kernels never imported count as nothing compiled."""
    kernel_modules = (
        "recmodels.ops.cpu_kernels",
        "recmodels.ops.lru_scan",
        "recmodels.ops.pointwise_attention",
        "recmodels.evaluation.topk",
    )
    modules = [sys.modules.get(name) for name in kernel_modules]
    return compiled_here(
        value
        for module in modules
        if module is not None
        for value in vars(module).values()
        if isinstance(value, numba.core.dispatcher.Dispatcher)
    )


def kernel_sources_fingerprint(env: Mapping[str, str] | None = None) -> str:
    """What a filled kernel cache depends on: the kernels' source files (Numba keys its cache by their
    modification times), Numba's version, the interpreter and the cache folder."""
    sources = [*sorted((RECMODELS / "ops").glob("*.py")), RECMODELS / "evaluation" / "topk.py"]
    parts = [f"{path}:{path.stat().st_mtime_ns}:{path.stat().st_size}" for path in sources]
    parts += [numba.__version__, sys.executable, (os.environ if env is None else env).get("NUMBA_CACHE_DIR", "")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def warm_kernel_cache(env: dict[str, str] | None = None, stamp: Path | None = None) -> float | None:
    """Fill Numba's on-disk cache in a process of its own (``python -m recmodels.training.warmup``), so that no training
    process carries the compiler's time or memory; the seconds it took, or None if it failed (training then
    compiles for itself, and its warm-up reports the time).

    ``stamp``: a file that records the fill (``kernel_sources_fingerprint``), so that the next call, from the
    next training step of a run say, returns 0.0 at once instead of spending seconds in a process that only
    loads the cache. Deleting the Numba cache by hand leaves the stamp: training then compiles in its own
    warm-up, before its meters start."""
    fingerprint = kernel_sources_fingerprint(env)
    if stamp is not None and stamp.is_file() and stamp.read_text() == fingerprint:
        return 0.0
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "recmodels.training.warmup"], env=env, capture_output=True, text=True
    )
    if completed.returncode != 0:
        return None
    if stamp is not None:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fingerprint)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    from recmodels.models import build_model
    from recmodels.ops.dispatch import backend_for

    parser = argparse.ArgumentParser(prog="python -m recmodels.training.warmup", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="device whose kernels to warm (default: cpu)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    seconds = 0.0
    # The models with compiled CPU kernels: RecMamba's mixer, LRURec's scan, HSTU's attention weights.
    for name in ("recmamba", "lrurec", "hstu"):
        model = build_model(name, 16, d_model=16, n_layers=1, max_len=16, dropout=0.0).to(device)
        seconds += warm_up(model, device)
    backend = backend_for("mix", device.type)
    print(
        f"recmodels.training.warmup: RecMamba, LRURec and HSTU kernels ({backend} backend, {device}) "
        f"ready in {seconds:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
