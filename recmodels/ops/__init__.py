"""Selective-scan operations with one entry point per operation, dispatched by device and availability."""

from recmodels.ops.dispatch import available_backends, selective_scan_fn, use_backend

__all__ = ["available_backends", "selective_scan_fn", "use_backend"]
