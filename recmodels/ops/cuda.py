"""mamba-ssm and causal-conv1d CUDA kernels behind the Contract 4 signatures.

Nothing from mamba_ssm or causal_conv1d is imported at module import: mamba_ssm hard-imports its CUDA
extension and triton, which break a CPU-only machine. ``is_available`` imports them only when a GPU is
present, and only reports True when their compiled extension modules really load. Install them with
``scripts/install_gpu.sh`` (they are not in pyproject: their sdists cannot produce metadata without CUDA).

Padding is masked outside the kernels (see ``compose.mamba_inner_with``), so the stock kernels serve
padded batches unchanged.
"""

from __future__ import annotations

import importlib
from functools import cache, partial
from types import ModuleType

import torch
from torch import Tensor

from recmodels.ops.compose import mamba_inner_with, mamba_mixer_with


@cache
def _kernels() -> dict[str, ModuleType] | None:
    """The kernel modules, or None when no GPU is present or the CUDA extensions do not load."""
    if not torch.cuda.is_available():
        return None
    try:
        importlib.import_module("selective_scan_cuda")  # mamba-ssm's compiled extension
        importlib.import_module("causal_conv1d_cuda")  # causal-conv1d's compiled extension
        scan = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
        conv = importlib.import_module("causal_conv1d")
    except Exception:  # ImportError, or an OSError/RuntimeError from a mismatched build
        return None
    try:
        state_update = importlib.import_module("mamba_ssm.ops.triton.selective_state_update")
    except Exception:  # triton missing: the chunked single step serves instead
        state_update = None
    kernels = {"scan": scan, "conv": conv}
    if state_update is not None:
        kernels["state_update"] = state_update
    return kernels


def is_available() -> bool:
    return _kernels() is not None


def _loaded() -> dict[str, ModuleType]:
    kernels = _kernels()
    if kernels is None:
        raise RuntimeError("the cuda scan backend needs a GPU with mamba-ssm and causal-conv1d installed")
    return kernels


def selective_scan_fn(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """mamba-ssm's kernel; it wants contiguous inputs, which our masked composition does not always give."""
    scan = _loaded()["scan"].selective_scan_fn
    return scan(
        u.contiguous(),
        delta.contiguous(),
        A.contiguous(),
        B.contiguous(),
        C.contiguous(),
        D,
        None if z is None else z.contiguous(),
        delta_bias,
        delta_softplus,
        return_last_state,
    )


def selective_state_update(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    dt_softplus: bool = False,
) -> Tensor:
    """mamba-ssm's triton single step when triton loads, else the plain-PyTorch step (same semantics)."""
    kernels = _loaded()
    if "state_update" in kernels:
        update = kernels["state_update"].selective_state_update
    else:
        from recmodels.ops.chunked import selective_state_update as update
    return update(state, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus)


def _causal_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    conv = _loaded()["conv"].causal_conv1d_fn
    return conv(x.contiguous(), weight.squeeze(1), bias, activation="silu")


# The Mamba mixer after ``in_proj`` on the causal-conv1d and selective-scan kernels, masked outside them.
mamba_inner_fn = partial(mamba_inner_with, selective_scan_fn, _causal_conv)
mamba_mixer_fn = partial(mamba_mixer_with, mamba_inner_fn)
