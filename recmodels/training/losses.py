"""Sampled softmax with a log-Q correction: a next-item loss whose cost does not grow with the catalogue.

Full-softmax logits over a million-item catalogue cost gigabytes per step; a sampled softmax scores each
position against its target and a few shared candidates only, so one step touches at most
``num_negatives + batch targets`` item rows. With ``per_position`` every position draws candidates of its own
(generative-recommenders' "local" negatives): (positions x num_negatives) logits, each position's softmax
against a different sample, at the price of gathering num_negatives item vectors per position.

Subtracting log Q(item) from every logit, where Q is the distribution the candidates were drawn from,
removes the bias that sampling popular items more often would put on the softmax (Bengio & Senecal 2008;
Yi et al. 2019 for in-batch negatives).

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
DENSE_SCORES_PER_NEGATIVE = 32  # per_position_softmax_loss scores the whole catalogue up to this many per candidate


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
    """Draws a step's candidates (shared, or ``per_position``) and scores every position against them."""

    def __init__(
        self,
        sampler: NegativeSampler,
        num_negatives: int,
        item_counts: np.ndarray,
        generator: torch.Generator,
        per_position: bool = False,
    ) -> None:
        self.sampler, self.num_negatives, self.generator = sampler, num_negatives, generator
        self.per_position = per_position and sampler != "in_batch"  # in-batch candidates are the step's own
        self.proposal = proposal_distribution(sampler, item_counts)
        self.log_q = self.proposal.log().clamp_min(SMALLEST_LOG)
        # Inverse-CDF draws: torch.multinomial refuses more than 2^24 categories (LFM-1b has 32 M tracks).
        self.cumulative = self.proposal.double().cumsum(0) if sampler == "popularity" else None

    def negatives(self, targets: Tensor) -> Tensor:
        """Candidate ids drawn on the CPU (reproducible): (K,) shared by every position of the step, or
        (n, K) with ``per_position``."""
        if self.sampler == "in_batch":
            return targets.unique()
        shape = (len(targets), self.num_negatives) if self.per_position else (self.num_negatives,)
        if self.sampler == "uniform":  # the same law as the proposal, without a search over the catalogue
            drawn = torch.randint(1, len(self.proposal), shape, generator=self.generator)
        else:
            drawn = inverse_cdf_draws(self.cumulative, shape, self.generator)
        return drawn.to(targets.device)

    def __call__(self, item_rows: ItemRows, hidden: Tensor, targets: Tensor) -> Tensor:
        negatives = self.negatives(targets)
        loss = per_position_softmax_loss if self.per_position else sampled_softmax_loss
        return loss(item_rows, hidden, targets, negatives, self.log_q.to(hidden.device))


def inverse_cdf_draws(cumulative: Tensor, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Ids drawn with replacement from the distribution whose float64 running sum is ``cumulative``: for
    u uniform in [0, total), the first id whose running sum exceeds u, so an id of probability 0 (padding)
    is never drawn; any catalogue size, O(log n) per draw."""
    uniform = torch.rand(shape, dtype=torch.float64, generator=generator) * cumulative[-1]
    return torch.searchsorted(cumulative, uniform, right=True).clamp_(max=len(cumulative) - 1)


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


def per_position_softmax_loss(
    item_rows: ItemRows, hidden: Tensor, targets: Tensor, negatives: Tensor, log_q: Tensor
) -> Tensor:
    """``sampled_softmax_loss`` with candidates of each position's own: negatives (n, K).

    Accidental hits are left out (as there). A catalogue of at most ``DENSE_SCORES_PER_NEGATIVE`` times K
    items is scored whole, one matrix product, and each position's logits picked from its row: on the CPU
    that is 1.5x faster than gathering K vectors per position (ML-1M, K = 128), though it multiplies the
    arithmetic. A larger one has each position's K candidate vectors gathered from the step's distinct rows.
    """
    catalogue = len(log_q)
    if catalogue <= DENSE_SCORES_PER_NEGATIVE * negatives.shape[1]:
        scores = hidden @ item_rows(torch.arange(catalogue, device=hidden.device)).T  # (n, num_items + 1)
        positive = scores.gather(1, targets[:, None])[:, 0]
        negative = scores.gather(1, negatives)
    else:
        count = len(targets)
        rows, inverse = torch.cat([targets, negatives.flatten()]).unique(return_inverse=True)
        embedded = item_rows(rows)  # (R, D)
        target_rows, negative_rows = inverse[:count], inverse[count:].view_as(negatives)
        positive = (hidden * embedded[target_rows]).sum(-1)  # (n,)
        negative = torch.bmm(embedded[negative_rows], hidden[:, :, None])[..., 0]  # (n, K)
    positive, negative = positive - log_q[targets], negative - log_q[negatives]
    negative = negative.masked_fill(negatives == targets[:, None], float("-inf"))
    logits = torch.cat([positive[:, None], negative], dim=1).float()
    return F.cross_entropy(logits, torch.zeros_like(targets))
