"""mamba-ssm and causal-conv1d CUDA kernels behind the Contract 4 signatures and the mixer's ``mix``.

Nothing from mamba_ssm or causal_conv1d is imported at module import: mamba_ssm hard-imports its CUDA
extension and triton, which break a CPU-only machine. ``is_available`` imports them only when a GPU is
present, and only reports True when their compiled extension modules really load. Install them with
``scripts/install_gpu.sh`` (they are not in pyproject: their sdists cannot produce metadata without CUDA).

Padding is masked outside the kernels (see ``mixer``), so the stock kernels serve padded batches
unchanged. mamba-ssm's scan has no initial state: a carried state's part is added in closed form
(``mixer.scan_from_zero_state``), and a single step is the length-1 case of the same call.
"""

from __future__ import annotations

import importlib
from functools import cache, partial
from types import ModuleType

import torch
from torch import Tensor

from recmodels.ops.mixer import causal_depthwise_conv, mix_with, scan_from_zero_state


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
    return {"scan": scan, "conv": conv}


def is_available() -> bool:
    return _kernels() is not None


def _loaded() -> dict[str, ModuleType]:
    kernels = _kernels()
    if kernels is None:
        raise RuntimeError("the cuda scan backend needs a GPU with mamba-ssm and causal-conv1d installed")
    return kernels


def selective_scan_fn(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, **options
) -> Tensor | tuple[Tensor, Tensor]:
    """mamba-ssm's kernel (options by name: D, z, delta_bias, delta_softplus, return_last_state); it wants
    contiguous inputs, which our masked composition does not always give."""
    if options.get("z") is not None:
        options["z"] = options["z"].contiguous()
    scan = _loaded()["scan"].selective_scan_fn
    return scan(u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(), C.contiguous(), **options)


def _causal_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if weight.shape[-1] < 2:  # causal-conv1d takes widths 2 to 4; width 1 (no convolution) is elementwise
        return causal_depthwise_conv(x, weight, bias)
    conv = _loaded()["conv"].causal_conv1d_fn
    return conv(x.contiguous(), weight.squeeze(1), bias, activation="silu")


# The Mamba mixer on the causal-conv1d and selective-scan kernels, masked outside them.
mix = partial(mix_with, scan_from_zero_state(selective_scan_fn), _causal_conv)
