"""CPU cost of one selective scan and of one sequence layer, forward + backward, against sequence length.

Rows, all measured in this one run (ratios only mean something side by side on a shared machine):
  scan  : fused (cpu_fused), chunked (plain PyTorch), pscan (mambapy's parallel scan), mamba_ssm_ref
          (mamba-ssm's selective_scan_ref, when importable), on batch 8, d_inner 128, d_state 16;
  layer : recmamba_fused / recmamba_chunked (build_model("recmamba", n_layers=1, d_model=64, d_state=16)
          with the backend forced), mambapy (its Mamba, one layer, pscan), sasrec_sdpa
          (build_model("sasrec", n_layers=1, d_model=64, n_heads=2)) and sasrec_explicit (the same model
          with the seed's explicit (L, L) softmax attention); input random items (8, L), loss the mean
          squared hidden state; dropout 0 (see DROPOUT).
Each (row, L) runs in a fresh process: a warm-up step, then the median of ``--repeats`` timed steps, and
the peak memory is the growth of the process's maximum RSS over those steps (measured from just before
the warm-up). Prints a table, writes JSON and a PNG plot to benchmarks/results/.

    .venv/bin/python benchmarks/scan_cpu.py              # everything, ~10 minutes on 2 cores
    .venv/bin/python benchmarks/scan_cpu.py --lengths 256 2048 --kinds layer
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BATCH, D_MODEL, D_INNER, D_STATE, THREADS = 8, 64, 128, 16, 2
# dropout 0 for every model, so the rows compare the layers' own arithmetic and memory. (SASRec applies
# no dropout to its attention weights at all: on the CPU that would push SDPA onto its (L, L) math path.)
DROPOUT = 0.0
ROWS = {
    "scan": ["fused", "chunked", "pscan", "mamba_ssm_ref"],
    "layer": ["recmamba_fused", "recmamba_chunked", "mambapy", "sasrec_sdpa", "sasrec_explicit"],
}
# Rows that would not fit the time or memory budget here: (kind, row) -> (smallest L skipped, why).
SKIPS = {
    ("scan", "pscan"): (8192, "pscan keeps four (B, L, 128, 16) fp32 tensors: >5 GB and ~10 s per step"),
    ("layer", "mambapy"): (8192, "same (B, L, 128, 16) expansion as the pscan row: >5 GB"),
    ("layer", "sasrec_explicit"): (8192, "explicit (8, 2, L, L) scores + softmax saved: >12 GB at L=8192"),
    ("scan", "mamba_ssm_ref"): (4096, "a Python loop over L: 175 s per step at L=2048 reported"),
}


# ---------------------------------------------------------------- one measurement (child process)


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def scan_step(row: str, length: int):
    """A closure running one forward + backward of the scan alone, or None if not importable."""
    import torch

    g = torch.Generator().manual_seed(0)
    u = torch.randn(BATCH, D_INNER, length, generator=g, requires_grad=True)
    delta = (0.5 * torch.randn(BATCH, D_INNER, length, generator=g) - 1).requires_grad_()
    A = (-torch.rand(D_INNER, D_STATE, generator=g) - 0.1).requires_grad_()
    B = torch.randn(BATCH, D_STATE, length, generator=g, requires_grad=True)
    C = torch.randn(BATCH, D_STATE, length, generator=g, requires_grad=True)
    D = torch.randn(D_INNER, generator=g, requires_grad=True)
    z = torch.randn(BATCH, D_INNER, length, generator=g, requires_grad=True)
    bias = torch.randn(D_INNER, generator=g, requires_grad=True)
    args = (u, delta, A, B, C, D, z, bias)
    if row in ("fused", "chunked"):
        from recmodels.ops.dispatch import load_backend

        module = load_backend("cpu_fused" if row == "fused" else "chunked")
        if module is None:
            return None
        scan = module.selective_scan_fn

        def run():
            scan(*args, delta_softplus=True).square().mean().backward()

        return run
    if row == "pscan":
        import torch.nn.functional as F
        from mambapy.pscan import pscan

        def run():
            dt = F.softplus(delta + bias[:, None]).transpose(1, 2)  # (B, L, D)
            x = u.transpose(1, 2)
            states = pscan(torch.exp(dt[..., None] * A), (dt * x)[..., None] * B.transpose(1, 2)[:, :, None])
            y = (states @ C.transpose(1, 2)[..., None]).squeeze(-1) + D * x
            (y * F.silu(z.transpose(1, 2))).square().mean().backward()

        return run
    if row == "mamba_ssm_ref":
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_ref
        except ImportError:
            return None

        def run():
            selective_scan_ref(*args, delta_softplus=True).square().mean().backward()

        return run
    raise ValueError(row)


def explicit_attention_forward(self, x, mask):
    """The seed's attention: materialized (L, L) scores, masked, softmax, times V."""
    import torch

    from recmodels.models.transformer import merge_heads, split_heads

    q, k, v = (split_heads(part, self.n_heads) for part in self.qkv(x).chunk(3, dim=-1))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, L, L)
    length = x.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    return self.out(merge_heads(torch.softmax(scores, dim=-1) @ v))


def layer_step(row: str, length: int):
    """A closure running one forward + backward of a one-layer model on random items (8, L)."""
    import torch

    items = torch.randint(1, 1001, (BATCH, length), generator=torch.Generator().manual_seed(0))
    if row == "mambapy":
        from mambapy.mamba import Mamba, MambaConfig

        embedding = torch.nn.Embedding(1001, D_MODEL)
        model = Mamba(MambaConfig(d_model=D_MODEL, n_layers=1, d_state=D_STATE, expand_factor=2, pscan=True))

        def forward():
            return model(embedding(items))
    else:
        from recmodels import build_model
        from recmodels.ops import use_backend

        if row.startswith("recmamba"):
            model = build_model("recmamba", 1000, n_layers=1, d_model=D_MODEL, d_state=D_STATE, max_len=length,
                                dropout=DROPOUT)  # fmt: skip
            backend = "cpu_fused" if row == "recmamba_fused" else "chunked"
        else:
            model = build_model("sasrec", 1000, n_layers=1, d_model=D_MODEL, n_heads=2, max_len=length,
                                dropout=DROPOUT)  # fmt: skip
            backend = None
            if row == "sasrec_explicit":
                for module in model.modules():
                    if type(module).__name__ == "CausalSelfAttention":
                        module.forward = explicit_attention_forward.__get__(module)

        def forward():
            if backend is None:
                return model(items)
            with use_backend(backend):
                return model(items)

    def run():
        forward().square().mean().backward()
        model.zero_grad(set_to_none=True)

    return run


def measure(kind: str, row: str, length: int, repeats: int) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    make = scan_step if kind == "scan" else layer_step
    try:
        small = make(row, 64)  # loads compiled kernels / caches at a negligible size
    except ImportError as error:
        return {"status": f"not importable: {error}"}
    if small is None:
        return {"status": "not importable"}
    small()
    step = make(row, length)
    base = max_rss_mb()
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"status": "ok", "seconds": statistics.median(times), "times": times, "peak_mb": max_rss_mb() - base}


# ---------------------------------------------------------------- driver


def run_child(kind: str, row: str, length: int, repeats: int, timeout: float) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "NUMBA_NUM_THREADS": str(THREADS)}
    command = [sys.executable, __file__, "--child", kind, row, str(length), "--repeats", str(repeats)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"status": f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio(results: dict, kind: str, a: str, b: str, length: int, field: str) -> float | None:
    x, y = results[kind].get(a, {}).get(str(length), {}), results[kind].get(b, {}).get(str(length), {})
    if x.get("status") == "ok" and y.get("status") == "ok" and y[field] > 0:
        return x[field] / y[field]
    return None


def print_table(results: dict, lengths: list[int]) -> None:
    for kind, rows in results.items():
        print(f"\n{kind}: seconds per forward+backward (median) / peak MB (max RSS growth)")
        print(f"{'row':<18}" + "".join(f"{'L=' + str(n):>20}" for n in lengths))
        for row, by_length in rows.items():
            cells = []
            for n in lengths:
                r = by_length.get(str(n), {})
                cells.append(f"{r['seconds']:.3f} s {r['peak_mb']:.0f} MB" if r.get("status") == "ok"
                             else (r.get("status", "-"))[:18])  # fmt: skip
            print(f"{row:<18}" + "".join(f"{c:>20}" for c in cells))


def headline(results: dict, lengths: list[int]) -> dict:
    """The issue's targets as ratios measured in this run."""
    lines = {}
    checks = [
        ("recmamba_fused / sasrec_sdpa time", "layer", "recmamba_fused", "sasrec_sdpa", "seconds",
         {2048: 0.6, 8192: 0.25}),
        ("recmamba_fused / sasrec_sdpa memory", "layer", "recmamba_fused", "sasrec_sdpa", "peak_mb",
         {2048: 1.0, 8192: 1.0}),
        ("recmamba_fused / sasrec_explicit time", "layer", "recmamba_fused", "sasrec_explicit", "seconds",
         {2048: 0.2}),
        ("recmamba_fused / sasrec_explicit memory", "layer", "recmamba_fused", "sasrec_explicit", "peak_mb",
         {2048: 0.1}),
        ("fused / pscan time (scan)", "scan", "fused", "pscan", "seconds", {2048: 0.1}),
    ]  # fmt: skip
    print("\nheadline ratios (target in brackets)")
    for name, kind, a, b, field, targets in checks:
        for n, target in targets.items():
            if n not in lengths or kind not in results:
                continue
            value = ratio(results, kind, a, b, n, field)
            verdict = "n/a" if value is None else ("MET" if value <= target else "MISSED")
            print(f"  {name:<42} L={n:<5} {value if value is None else round(value, 3)!s:>7} (<= {target}) "
                  f"{verdict}")  # fmt: skip
            lines[f"{name} L={n}"] = {"ratio": value, "target": target, "met": verdict == "MET"}
    return lines


def plot(results: dict, lengths: list[int], path: Path) -> None:
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axes = plt.subplots(2, 2, figsize=(12, 8))
    for column, kind in enumerate(("scan", "layer")):
        for row, by_length in results.get(kind, {}).items():
            ok = [(n, by_length[str(n)]) for n in lengths if by_length.get(str(n), {}).get("status") == "ok"]
            if ok:
                axes[0, column].plot([n for n, _ in ok], [r["seconds"] for _, r in ok], "o-", label=row)
                axes[1, column].plot([n for n, _ in ok], [r["peak_mb"] for _, r in ok], "o-", label=row)
        for r, label in ((0, "seconds per fwd+bwd"), (1, "peak MB (max RSS growth)")):
            axes[r, column].set(xscale="log", yscale="log", xlabel="L", ylabel=label, title=f"{kind}")
            axes[r, column].set_xticks(lengths, [str(n) for n in lengths], minor=False)
            axes[r, column].xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            if axes[r, column].lines:  # a kind left out of this run has nothing to label
                axes[r, column].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "ROW", "L"), help=argparse.SUPPRESS)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 2048, 4096, 8192])
    parser.add_argument("--kinds", nargs="+", default=["scan", "layer"], choices=list(ROWS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per (row, L) process")
    args = parser.parse_args()
    if args.child:
        kind, row, length = args.child
        print(json.dumps(measure(kind, row, int(length), args.repeats)))
        return

    results: dict = {kind: {row: {} for row in ROWS[kind]} for kind in args.kinds}
    started = time.time()
    for n in args.lengths:  # by length, so a cut-short run still has complete small-L columns
        for kind in args.kinds:
            for row in ROWS[kind]:
                skip = SKIPS.get((kind, row))
                if skip and n >= skip[0]:
                    results[kind][row][str(n)] = {"status": f"skipped: {skip[1]}"}
                    continue
                if row == "mamba_ssm_ref" and results[kind][row].get(str(args.lengths[0]), {}).get(
                    "status", ""
                ).startswith("not importable"):
                    results[kind][row][str(n)] = {"status": "not importable"}
                    continue
                result = run_child(kind, row, n, args.repeats, args.timeout)
                results[kind][row][str(n)] = result
                shown = f"{result['seconds']:.3f} s, {result['peak_mb']:.0f} MB" if result["status"] == "ok" else ""
                print(f"[{time.time() - started:5.0f} s] {kind:<5} {row:<18} L={n:<5} {result['status']} {shown}",
                      flush=True)  # fmt: skip
    print_table(results, args.lengths)
    targets = headline(results, args.lengths)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {"batch": BATCH, "d_model": D_MODEL, "d_inner": D_INNER, "d_state": D_STATE, "threads": THREADS,
            "repeats": args.repeats, "torch": __import__("torch").__version__, "cpu_count": os.cpu_count()}  # fmt: skip
    payload = {"meta": meta, "results": results, "headline": targets}
    (RESULTS / f"scan_cpu-{stamp}.json").write_text(json.dumps(payload, indent=2))
    plot(results, args.lengths, RESULTS / f"scan_cpu-{stamp}.png")
    print(f"\nwrote {RESULTS / f'scan_cpu-{stamp}.json'} and .png ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
