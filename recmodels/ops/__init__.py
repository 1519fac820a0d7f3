"""The Mamba mixer, one entry point (``mix``) dispatched by device and availability."""

from recmodels.ops.dispatch import available_backends, mix, use_backend
from recmodels.ops.mixer import MixerState, MixerWeights

__all__ = ["MixerState", "MixerWeights", "available_backends", "mix", "use_backend"]
