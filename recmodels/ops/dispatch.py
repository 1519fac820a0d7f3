"""Chooses the selective-scan implementation for the tensors at hand, so callers never branch on hardware.

Each backend is a module in this package exposing ``is_available() -> bool`` and the mixer ``mix`` (see
``recmodels.ops.mixer``), built on its own ``selective_scan_fn`` (mamba-ssm's signature). CUDA tensors
use ``cuda`` (mamba-ssm kernels) when it loads, CPU tensors ``cpu_fused`` (compiled kernels) when it
loads; ``chunked`` (plain PyTorch) runs everywhere. ``use_backend`` or ``RECMAMBA_SCAN_BACKEND`` forces
one, for tests and benchmarks.
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

from recmodels.ops.mixer import MixerState, MixerWeights

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


def mix(
    x: Tensor, weights: MixerWeights, mask: Tensor | None = None, state: MixerState | None = None
) -> tuple[Tensor, MixerState]:
    """The Mamba mixer on x (batch, length, d_model), continuing from ``state`` (None: a fresh start);
    returns the output and the state after the last step (the contract in ``recmodels.ops.mixer``)."""
    return resolve("mix", x.device.type)(x, weights, mask, state)
