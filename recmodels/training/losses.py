"""Sampled softmax with a log-Q correction: a next-item loss whose cost does not grow with the catalogue.

Full-softmax logits over a million-item catalogue cost gigabytes per step; a sampled softmax scores each
position against its target and a few shared candidates only, so one step touches at most
``num_negatives + batch targets`` item rows. Subtracting log Q(item) from every logit, where Q is the
distribution the candidates were drawn from, removes the bias that sampling popular items more often
would put on the softmax (Bengio & Senecal 2008; Yi et al. 2019 for in-batch negatives).

Item rows are read through the model's ``item_vectors(ids)``, which reads the ``nn.Embedding`` module, so with
``sparse=True`` their gradient is sparse and a row-wise optimizer (``recmodels.training.sparse_optim``) updates only
the rows a step touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

NegativeSampler = Literal["uniform", "popularity", "in_batch"]
ItemRows = Callable[[Tensor], Tensor]  # item ids (R,) -> their vectors (R, D): a model's item_vectors, an nn.Embedding
SMALLEST_LOG = -27.6  # log(1e-12): an item no proposal ever draws keeps a finite correction


def proposal_distribution(sampler: NegativeSampler, item_counts: np.ndarray) -> Tensor:
    """Q(item) over ids 0..num_items (0, padding, gets 0).

    ``uniform``: every item alike; ``popularity`` and ``in_batch``: training frequency plus one, since
    in-batch candidates are other positions' targets, which occur as often as items occur in training.
    """
    counts = torch.from_numpy(np.array(item_counts, dtype=np.float64))  # a copy: the counts may be a read-only map
    weights = torch.ones_like(counts) if sampler == "uniform" else counts + 1.0
    weights[0] = 0.0
    return (weights / weights.sum()).float()


class SampledSoftmax:
    """Draws the shared candidates of a step and scores every position against them."""

    def __init__(
        self, sampler: NegativeSampler, num_negatives: int, item_counts: np.ndarray, generator: torch.Generator
    ) -> None:
        self.sampler, self.num_negatives, self.generator = sampler, num_negatives, generator
        self.proposal = proposal_distribution(sampler, item_counts)
        self.log_q = self.proposal.log().clamp_min(SMALLEST_LOG)

    def negatives(self, targets: Tensor) -> Tensor:
        """(K,) candidate ids shared by every position of the step (drawn on the CPU: reproducible)."""
        if self.sampler == "in_batch":
            return targets.unique()
        drawn = torch.multinomial(self.proposal, self.num_negatives, replacement=True, generator=self.generator)
        return drawn.to(targets.device)

    def __call__(self, item_rows: ItemRows, hidden: Tensor, targets: Tensor) -> Tensor:
        negatives = self.negatives(targets)
        return sampled_softmax_loss(item_rows, hidden, targets, negatives, self.log_q.to(hidden.device))


def sampled_softmax_loss(
    item_rows: ItemRows, hidden: Tensor, targets: Tensor, negatives: Tensor, log_q: Tensor
) -> Tensor:
    """Mean over positions of -log softmax of the target among itself and ``negatives``, logits - log Q.

    hidden (n, D), targets (n,), negatives (K,) shared, log_q (num_items + 1,). A negative equal to the
    position's own target (an accidental hit) is left out of that position's softmax, so the target is
    never pushed down as its own negative. Repeated negatives (sampling with replacement) each count.
    """
    rows, inverse = torch.cat([targets, negatives]).unique(return_inverse=True)
    embedded = item_rows(rows)  # (R, D): the only item rows this step reads or writes
    target_rows, negative_rows = inverse[: len(targets)], inverse[len(targets) :]
    positive = (hidden * embedded[target_rows]).sum(-1) - log_q[targets]  # (n,)
    negative = hidden @ embedded[negative_rows].T - log_q[negatives]  # (n, K)
    negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([positive[:, None], negative], dim=1).float()
    return F.cross_entropy(logits, torch.zeros_like(targets))
