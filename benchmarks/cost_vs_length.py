"""Forward + backward time and peak memory against sequence length, one layer and whole model, every model.

    .venv/bin/python benchmarks/cost_vs_length.py [--lengths 256 1024 2048 4096 8192] [--device cpu]

Each (row, scope, length) runs in a fresh subprocess, so one configuration's peak memory is not hidden by
another's (on CPU ru_maxrss only grows). Prints a table, writes benchmarks/results/cost_vs_length.json and
a plot beside it. The scan runs on the dispatcher's default backend for the device (recorded per row).
"naive_attention" is the explicit (L x L) softmax attention the seed's SASRec used, as a reference.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recmodels import build_model  # noqa: E402
from recmodels.evaluation.cost import max_rss_mb  # noqa: E402
from recmodels.models.gru4rec import GRU4RecConfig  # noqa: E402
from recmodels.models.linrec import CausalLinearAttention  # noqa: E402
from recmodels.models.lrurec import LinearRecurrentUnit, LRURecConfig  # noqa: E402
from recmodels.models.mamba4rec import Mamba4RecBlock, Mamba4RecConfig  # noqa: E402
from recmodels.models.mamba_mixer import MambaMixer  # noqa: E402
from recmodels.models.sasrec import CausalSelfAttention, SASRecConfig  # noqa: E402
from recmodels.models.transformer import TransformerRecommender, merge_heads, split_heads  # noqa: E402
from recmodels.ops.dispatch import backend_for  # noqa: E402

ROWS = ("recmamba", "recmamba_lti", "mamba4rec", "sasrec", "hstu", "naive_attention", "linrec", "gru4rec", "lrurec")
SCOPES = ("layer", "model")
NUM_ITEMS = 1000
LIMIT_GB = 8.0  # skip a configuration whose L x L score tensors alone would exceed this (RAM is finite)


class NaiveCausalAttention(nn.Module):
    """softmax(Q K^T / sqrt(d) + causal mask) V with the (B, H, L, L) scores materialised, as in the seed."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        q, k, v = (split_heads(part, self.n_heads) for part in self.qkv(x).chunk(3, dim=-1))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, L, L)
        length = x.shape[1]
        future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(future | ~mask[:, None, None, :], float("-inf"))
        return self.out(merge_heads(torch.softmax(scores, dim=-1) @ v))


def build(row: str, scope: str, length: int, d_model: int) -> nn.Module:
    if scope == "model":
        if row == "naive_attention":
            config = SASRecConfig(d_model=d_model, max_len=length, dropout=0.0)
            heads = [NaiveCausalAttention(d_model, config.n_heads) for _ in range(config.n_layers)]
            return TransformerRecommender(NUM_ITEMS, config, heads)
        if row == "recmamba_lti":
            return build_model("recmamba", NUM_ITEMS, d_model=d_model, max_len=length, dropout=0.0, selective=False)
        return build_model(row, NUM_ITEMS, d_model=d_model, max_len=length, dropout=0.0)
    if row == "recmamba":
        return MambaMixer(d_model)
    if row == "recmamba_lti":
        return MambaMixer(d_model, selective=False)
    if row == "hstu":  # its layer needs the model's bias layout: one layer with the (small) embedding around it
        return build_model("hstu", NUM_ITEMS, d_model=d_model, max_len=length, dropout=0.0, n_layers=1)
    if row == "mamba4rec":
        return Mamba4RecBlock(Mamba4RecConfig(d_model=d_model, dropout=0.0))
    if row == "sasrec":
        return CausalSelfAttention(d_model, SASRecConfig().n_heads)
    if row == "naive_attention":
        return NaiveCausalAttention(d_model, SASRecConfig().n_heads)
    if row == "linrec":
        return CausalLinearAttention(d_model, SASRecConfig().n_heads, 64)
    if row == "gru4rec":
        return nn.GRU(d_model, GRU4RecConfig(d_model=d_model).d_model, batch_first=True)
    if row == "lrurec":
        config = LRURecConfig(d_model=d_model)
        return LinearRecurrentUnit(d_model, config.expand * d_model, config.r_min, config.r_max)
    raise ValueError(row)


def forward_backward(module: nn.Module, row: str, scope: str, inputs: Tensor, mask: Tensor) -> None:
    if row == "hstu":  # events a minute apart: the time bias is computed as in training
        gaps = torch.full(inputs.shape[:2], 60_000, dtype=torch.long, device=inputs.device)
        out = module(inputs, gaps.cumsum(dim=1))
    elif scope == "model":
        out = module(inputs)
    elif row == "gru4rec":
        out = module(inputs)[0]
    elif row in ("mamba4rec", "lrurec"):
        out = module(inputs, mask)[0]
    else:
        out = module(inputs, mask)
    out.square().mean().backward()


def measure_one(row: str, scope: str, length: int, batch: int, d_model: int, device: str) -> dict:
    """Runs inside the subprocess: warm up once, then time forward + backward."""
    torch.manual_seed(0)
    module = build(row, scope, length, d_model).to(device)
    if scope == "model" or row == "hstu":
        inputs = torch.randint(1, NUM_ITEMS + 1, (batch, length), device=device)
    else:
        inputs = torch.randn(batch, length, d_model, device=device, requires_grad=True)
    mask = torch.ones(batch, length, dtype=torch.bool, device=device)
    backend = backend_for("mix", torch.device(device).type)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline_mb = max_rss_mb()
    times = []
    for repeat in range(3):
        began = time.perf_counter()
        forward_backward(module, row, scope, inputs, mask)
        sync()
        times.append(time.perf_counter() - began)
        module.zero_grad(set_to_none=True)
        if repeat == 0 and times[0] > 20:  # slow: the warm-up plus one timed run is enough
            forward_backward(module, row, scope, inputs, mask)
            sync()
            times.append(time.perf_counter() - began - times[0])
            break
    peak_mb = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else max_rss_mb() - baseline_mb
    uses_scan = row in ("recmamba", "recmamba_lti", "mamba4rec")
    return {
        "row": row,
        "scope": scope,
        "length": length,
        "seconds": statistics.median(times[1:]),
        "peak_memory_mb": peak_mb,
        "parameters": sum(p.numel() for p in module.parameters()),
        "scan_backend": backend if uses_scan else None,
        "status": "ok",
    }


def naive_scores_gb(row: str, scope: str, length: int, batch: int) -> float:
    """Memory the explicit L x L scores need: scores, softmax, mask and their gradients, per layer kept."""
    if row != "naive_attention":
        return 0.0
    layers = SASRecConfig().n_layers if scope == "model" else 1
    return layers * 3 * batch * SASRecConfig().n_heads * length * length * 4 / 2**30


def run_in_subprocess(row: str, scope: str, length: int, args: argparse.Namespace) -> dict:
    skip = {"row": row, "scope": scope, "length": length, "seconds": None, "peak_memory_mb": None}
    needed = naive_scores_gb(row, scope, length, args.batch)
    if needed > LIMIT_GB:
        return skip | {"status": f"skipped (L x L scores need ~{needed:.0f} GB > {LIMIT_GB:.0f} GB)"}
    command = [sys.executable, __file__, "--one", row, scope, str(length), "--batch", str(args.batch)]
    command += ["--d-model", str(args.d_model), "--device", args.device]
    environment = dict(os.environ)
    if args.scan_backend:
        environment["RECMAMBA_SCAN_BACKEND"] = args.scan_backend
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.timeout, check=False, env=environment
        )
    except subprocess.TimeoutExpired:
        return skip | {"status": f"skipped (over the {args.timeout:.0f} s limit per configuration)"}
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:120]
        return skip | {"status": f"failed ({reason})"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: list[dict], lengths: list[int]) -> str:
    lines = [f"{'row':<16}{'scope':<7}{'backend':<10}" + "".join(f"{f'L={n}':>22}" for n in lengths)]
    lines.append(" " * 33 + "".join(f"{'seconds / MB':>22}" for _ in lengths))
    for scope in SCOPES:
        for row in ROWS:
            if not any(r["row"] == row and r["scope"] == scope for r in results):
                continue
            cells, backend = [], "-"
            for length in lengths:
                found = [r for r in results if (r["row"], r["scope"], r["length"]) == (row, scope, length)]
                if not found:
                    cells.append(f"{'':>22}")
                    continue
                result = found[0]
                backend = result.get("scan_backend") or backend
                if result["status"] == "ok":
                    cells.append(f"{result['seconds']:>11.3f} / {result['peak_memory_mb']:>7.0f}")
                else:
                    cells.append(f"{result['status'].split(' (')[0]:>22}")
            lines.append(f"{row:<16}{scope:<7}{backend:<10}" + "".join(cells))
    notes = sorted({f"{r['row']} {r['scope']} L={r['length']}: {r['status']}" for r in results if r["status"] != "ok"})
    return "\n".join(lines + (["", *notes] if notes else []))


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    for column, scope in enumerate(SCOPES):
        for row in ROWS:
            points = sorted(
                (r["length"], r["seconds"], r["peak_memory_mb"])
                for r in results
                if r["row"] == row and r["scope"] == scope and r["status"] == "ok"
            )
            if not points:
                continue
            lengths, seconds, memory = zip(*points, strict=True)
            axes[0][column].plot(lengths, seconds, marker="o", label=row)
            axes[1][column].plot(lengths, [max(m, 1.0) for m in memory], marker="o", label=row)
        axes[0][column].set_title(f"{scope}: forward + backward seconds")
        axes[1][column].set_title(f"{scope}: peak memory (MB)")
        for axis in (axes[0][column], axes[1][column]):
            axis.set_xscale("log", base=2)
            axis.set_yscale("log")
            axis.set_xlabel("sequence length L")
            axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 2048, 4096, 8192])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per configuration")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--scan-backend", help="force one scan backend (else the dispatcher's default)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--one", nargs=3, metavar=("ROW", "SCOPE", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        row, scope, length = args.one
        print(json.dumps(measure_one(row, scope, int(length), args.batch, args.d_model, args.device)))
        return

    results = []
    for scope in SCOPES:
        for row in args.rows:
            too_slow = None
            for length in args.lengths:
                if too_slow is not None:  # time grows at least linearly: do not start what cannot finish
                    skip = {"row": row, "scope": scope, "length": length, "seconds": None, "peak_memory_mb": None}
                    results.append(skip | {"status": f"skipped ({too_slow})"})
                    continue
                result = run_in_subprocess(row, scope, length, args)
                results.append(result)
                print(f"{row} {scope} L={length}: {result['status']} {result.get('seconds')}", file=sys.stderr)
                if result["status"] != "ok":
                    too_slow = f"L={length} did not finish"
                elif result["seconds"] * 2.2 * 3 > args.timeout:
                    too_slow = f"L={length} took {result['seconds']:.0f} s; the next length would pass the limit"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "batch": args.batch,
        "d_model": args.d_model,
        "device": args.device,
        "torch": torch.__version__,
        "scan_backend_forced": args.scan_backend,
        "threads": torch.get_num_threads(),
        "memory": "CUDA max allocated" if args.device == "cuda" else "increase of peak RSS over the set-up (MB)",
    }
    name = "cost_vs_length" + (f"_{args.scan_backend}" if args.scan_backend else "")
    (args.out_dir / f"{name}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(table(results, args.lengths))
    try:
        plot(results, args.out_dir / f"{name}.png")
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)


if __name__ == "__main__":
    main()
