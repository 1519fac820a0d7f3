"""Chooses the selective-scan implementation for the tensors at hand, so callers never branch on hardware.

Each backend is a module in this package exposing ``is_available() -> bool`` and any of the three
operations below under the same names and signatures. CUDA tensors use ``cuda`` (mamba-ssm kernels) when
it loads, CPU tensors ``cpu_fused`` (compiled kernel) when it loads; ``chunked`` (plain PyTorch) runs
everywhere. ``use_backend`` or ``RECMAMBA_SCAN_BACKEND`` forces one, for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from functools import cache
from types import ModuleType

from torch import Tensor

BACKENDS = ("reference", "chunked", "cpu_fused", "cuda")
PREFERENCE = {"cuda": ("cuda", "chunked"), "cpu": ("cpu_fused", "chunked")}

_forced_backend: ContextVar[str | None] = ContextVar("forced_scan_backend", default=None)


@cache
def load_backend(name: str) -> ModuleType | None:
    """The backend's module, or None when it cannot run in this process (missing package, no GPU)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown scan backend {name!r}; expected one of {', '.join(BACKENDS)}")
    try:
        module = importlib.import_module(f"recmodels.ops.{name}")
    except ImportError:
        return None
    return module if module.is_available() else None


def available_backends() -> list[str]:
    return [name for name in BACKENDS if load_backend(name) is not None]


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force every operation in this context onto one backend; fails at once if it cannot run here."""
    if load_backend(name) is None:
        raise RuntimeError(f"scan backend {name!r} is not available here (have: {available_backends()})")
    token = _forced_backend.set(name)
    try:
        yield
    finally:
        _forced_backend.reset(token)


def backend_for(operation: str, device_type: str) -> str:
    """The name of the backend that runs ``operation`` on ``device_type`` tensors here and now."""
    forced = _forced_backend.get() or os.environ.get("RECMAMBA_SCAN_BACKEND") or None
    candidates = (forced,) if forced else PREFERENCE.get(device_type, ("chunked",))
    for name in candidates:
        module = load_backend(name)
        if module is not None and hasattr(module, operation):
            return name
    raise RuntimeError(f"no scan backend among {candidates} implements {operation} on {device_type}")


def resolve(operation: str, device_type: str) -> Callable:
    """The function implementing ``operation`` for tensors on ``device_type``."""
    return getattr(load_backend(backend_for(operation, device_type)), operation)


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
    """Same signature and semantics as ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``."""
    scan = resolve("selective_scan_fn", u.device.type)
    return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


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
    """One recurrence step for every (batch, channel); ``state`` is updated in place (mamba-ssm semantics)."""
    update = resolve("selective_state_update", x.device.type)
    return update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)


def mamba_inner_fn(
    xz: Tensor,
    conv1d_weight: Tensor,
    conv1d_bias: Tensor | None,
    x_proj_weight: Tensor,
    delta_proj_weight: Tensor,
    out_proj_weight: Tensor,
    out_proj_bias: Tensor | None,
    A: Tensor,
    D: Tensor | None,
    delta_bias: Tensor | None,
    mask: Tensor | None = None,
    delta_softplus: bool = True,
) -> Tensor:
    """The Mamba mixer after ``in_proj``; ``mask`` (batch, length) is True on real events."""
    inner = resolve("mamba_inner_fn", xz.device.type)
    return inner(
        xz,
        conv1d_weight,
        conv1d_bias,
        x_proj_weight,
        delta_proj_weight,
        out_proj_weight,
        out_proj_bias,
        A,
        D,
        delta_bias,
        mask,
        delta_softplus,
    )


def mamba_mixer_fn(
    x: Tensor,
    in_proj_weight: Tensor,
    in_proj_bias: Tensor | None,
    conv1d_weight: Tensor,
    conv1d_bias: Tensor | None,
    x_proj_weight: Tensor,
    delta_proj_weight: Tensor,
    out_proj_weight: Tensor,
    out_proj_bias: Tensor | None,
    A: Tensor,
    D: Tensor | None,
    delta_bias: Tensor | None,
    mask: Tensor | None = None,
    delta_softplus: bool = True,
) -> Tensor:
    """The whole Mamba mixer from its input x (batch, length, d_model), ``in_proj`` included."""
    mixer = resolve("mamba_mixer_fn", x.device.type)
    return mixer(
        x,
        in_proj_weight,
        in_proj_bias,
        conv1d_weight,
        conv1d_bias,
        x_proj_weight,
        delta_proj_weight,
        out_proj_weight,
        out_proj_bias,
        A,
        D,
        delta_bias,
        mask=mask,
        delta_softplus=delta_softplus,
    )
