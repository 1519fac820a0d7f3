"""Selective-scan operations with one entry point per operation, dispatched by device and availability."""

from recmodels.ops.dispatch import (
    available_backends,
    mamba_inner_fn,
    mamba_mixer_fn,
    selective_scan_fn,
    selective_state_update,
    use_backend,
)

__all__ = [
    "available_backends",
    "mamba_inner_fn",
    "mamba_mixer_fn",
    "selective_scan_fn",
    "selective_state_update",
    "use_backend",
]
