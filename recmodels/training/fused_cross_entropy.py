"""Full-softmax cross-entropy of hidden states against every item vector, fused with its own gradients.

Written plainly, ``cross_entropy(hidden @ items.T, targets)`` stores an (n, catalogue) logit matrix (380 MB
for 128 windows of 200 events over MovieLens-1M's 3,706 items), reads and writes it again for the log-softmax
and its backward, and a memory-bounded version has to recompute it in backward. Since the loss is a scalar
at the end of the graph, its gradients can be formed in the forward pass instead: per block of rows,
P = softmax(h @ W.T), subtract one at the target, then grad_h = P @ W / n and grad_W += P.T @ h / n.
Three matrix products per block, the block's logits small enough to stay in cache, nothing kept for
backward but the two gradients, which backward only scales. This is how fused linear-cross-entropy kernels
work on GPUs (e.g. Liger-Kernel's); on this CPU it runs the loss at near the matrix-product rate.

Row 0 of the item table is padding: it is never a class (its logit is -inf in ``model.scores``), so the
softmax runs over rows 1.., and row 0's gradient is zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Logits of one block of rows take about this many bytes: on the CPU small enough to stay in the cache
# between the product that writes them and the two that read them (a SASRec step at MovieLens-1M's shape,
# 3,706 items: 1 MB blocks 0.90-0.99 s, 4 MB 0.64-0.68 s, 16 MB 0.70-0.75 s); on a GPU large enough to fill
# the device.
CPU_BLOCK_BYTES = 4 * 2**20
DEVICE_BLOCK_BYTES = 256 * 2**20
MIN_BLOCK_ROWS = 64
SMALLEST_PROBABILITY = torch.finfo(torch.float32).tiny


def block_rows(num_classes: int, device: torch.device) -> int:
    """Rows per block for a catalogue of ``num_classes`` items on ``device``."""
    budget = CPU_BLOCK_BYTES if device.type == "cpu" else DEVICE_BLOCK_BYTES
    return max(MIN_BLOCK_ROWS, budget // (4 * num_classes))


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # no bfloat16 autocast inside
    def forward(ctx, hidden: Tensor, item_table: Tensor, targets: Tensor, rows_per_block: int) -> Tensor:
        # hidden (n, D) and item_table (V + 1, D) in float32; targets (n,) in 1..V.
        count = hidden.shape[0]
        items = item_table[1:]  # (V, D): row 0 is padding, never a class
        classes = targets - 1
        grad_hidden = torch.empty_like(hidden)
        grad_table = torch.zeros_like(item_table)
        grad_items = grad_table[1:]
        total = hidden.new_zeros(())
        # One logit buffer for every block: a fresh 4 MB tensor per block costs a page-faulting allocation
        # (about half as long as the block's logit product on this CPU).
        buffer = hidden.new_empty(min(rows_per_block, count), items.shape[0])
        for start in range(0, count, rows_per_block):
            rows = slice(start, start + rows_per_block)
            block_hidden, block_classes = hidden[rows], classes[rows, None]
            probabilities = buffer[: block_hidden.shape[0]]  # (b, V)
            torch.mm(block_hidden, items.T, out=probabilities)
            torch.softmax(probabilities, dim=1, out=probabilities)  # in place: one fused pass over the logits
            # -log p(target); a probability that underflows to 0 (a logit gap above ~100) counts as that gap
            total -= probabilities.gather(1, block_classes).clamp_min(SMALLEST_PROBABILITY).log().sum()
            # d(loss)/d(logits) = (softmax - one_hot) / n: the one_hot in place, the 1/n in the products
            probabilities.scatter_add_(1, block_classes, probabilities.new_full(block_classes.shape, -1.0))
            torch.addmm(grad_hidden[rows], probabilities, items, beta=0, alpha=1 / count, out=grad_hidden[rows])
            grad_items.addmm_(probabilities.T, block_hidden, alpha=1 / count)
        ctx.save_for_backward(grad_hidden, grad_table)
        return total / count

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_output: Tensor):
        grad_hidden, grad_table = ctx.saved_tensors
        return grad_hidden * grad_output, grad_table * grad_output, None, None


def fused_linear_cross_entropy(
    hidden: Tensor, item_table: Tensor, targets: Tensor, rows_per_block: int | None = None
) -> Tensor:
    """Mean over rows of ``cross_entropy(hidden @ item_table[1:].T, targets - 1)``: the full softmax of
    each row's target among items 1..V, with row 0 (padding) never a class.

    hidden (n, D), item_table (V + 1, D) (a model's ``item_vectors()``: gradients flow back through it),
    targets (n,) in 1..V. Computed in float32 whatever the inputs' dtype; gradients come back in theirs."""
    if hidden.shape[0] == 0:
        raise ValueError("fused_linear_cross_entropy needs at least one row with a target")
    rows = rows_per_block or block_rows(item_table.shape[0] - 1, hidden.device)
    return _FusedLinearCrossEntropy.apply(hidden.float(), item_table.float(), targets, rows)
