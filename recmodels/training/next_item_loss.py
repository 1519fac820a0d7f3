"""The three next-item objectives the trainer offers, over the positions of a batch that have a target.

``ce`` is the full softmax over the catalogue through ``fused_linear_cross_entropy``: its logits exist a
block of rows at a time and its gradients are formed in the same pass, so the whole (positions x catalogue)
logit matrix is never stored nor recomputed in backward. ``sampled_softmax`` scores each position against a
few shared candidates (``recmodels.training.losses``); ``bce`` against one uniform negative per position,
as the RecMamba paper trains.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recmodels.models.base import SequentialRecommender
from recmodels.training.config import TrainConfig
from recmodels.training.fused_cross_entropy import fused_linear_cross_entropy
from recmodels.training.losses import SampledSoftmax


class NextItemLoss:
    """The objective of ``config.loss`` over positions that have a target (target != 0)."""

    def __init__(self, config: TrainConfig, item_counts: np.ndarray, generator: torch.Generator) -> None:
        self.kind, self.generator = config.loss, generator
        self.sampled = SampledSoftmax(
            config.negatives, config.num_negatives, item_counts, generator, config.negatives_per_position
        )

    def __call__(self, model: SequentialRecommender, hidden: Tensor, targets: Tensor) -> Tensor:
        present = targets != 0
        hidden, targets = hidden[present], targets[present]  # (n, D), (n,)
        if self.kind == "ce":
            return fused_linear_cross_entropy(hidden, model.item_vectors(), targets)
        if self.kind == "sampled_softmax":
            return self.sampled(model.item_vectors, hidden, targets)
        return self.binary_cross_entropy(model, hidden, targets)

    def binary_cross_entropy(self, model: SequentialRecommender, hidden: Tensor, targets: Tensor) -> Tensor:
        """One uniform negative per position (the seed's setting); rows read through the module, so that
        with sparse item gradients only they are updated."""
        negatives = torch.randint(1, model.num_items + 1, targets.shape, generator=self.generator)
        positive = (hidden * model.item_vectors(targets)).sum(-1).float()
        negative = (hidden * model.item_vectors(negatives.to(hidden.device))).sum(-1).float()
        return (F.softplus(-positive) + F.softplus(negative)).mean()
