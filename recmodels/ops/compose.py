"""How every backend builds the Mamba mixer from its own scan and conv, so all of them mask padding alike.

``mamba_inner_with`` composes a backend's selective scan and causal conv into ``mamba_inner_fn`` (the
mixer after ``in_proj``), ``mamba_mixer_with`` puts ``in_proj`` in front; ``causal_depthwise_conv`` is
the plain-PyTorch conv for backends without a conv kernel. Production code; the float64 oracle
(``reference``) composes its scan the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor


def causal_depthwise_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """SiLU(causal depthwise conv1d): x (batch, channels, length), weight (channels, 1, width)."""
    width = weight.shape[-1]
    out = F.conv1d(x, weight, bias, padding=width - 1, groups=x.shape[1])[..., : x.shape[-1]]
    return F.silu(out)


def mamba_inner_with(
    scan: Callable[..., Tensor],
    conv: Callable[[Tensor, Tensor, Tensor | None], Tensor],
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
    """The Mamba mixer after ``in_proj`` built from a scan and a conv, so every backend masks the same way.

    xz (batch, 2 * d_inner, length) as in mamba-ssm; returns (batch, length, d_model).
    Padding (``mask`` False) is masked outside the kernels, which then need no mask support: the conv
    input is zeroed there (a real event's window sees zeros, exactly like the conv's own left padding),
    and delta = softplus(dt + bias) is computed here and zeroed there, so exp(delta * A) = 1 and
    delta * B * u = 0: a padded step leaves the state untouched whatever it holds. u is zeroed too, so
    padded outputs carry no D * u term.
    """
    x, z = xz.chunk(2, dim=1)  # (batch, d_inner, length) each
    keep = None if mask is None else mask[:, None, :].to(x.dtype)  # (batch, 1, length)
    if keep is not None:
        x = x * keep
    u = conv(x, conv1d_weight, conv1d_bias)  # (batch, d_inner, length)
    if keep is not None:
        u = u * keep
    dt_rank, d_state = delta_proj_weight.shape[1], A.shape[-1]
    x_dbl = F.linear(u.transpose(1, 2), x_proj_weight)  # (batch, length, dt_rank + 2 * d_state)
    dt, B, C = x_dbl.split([dt_rank, d_state, d_state], dim=-1)
    delta = F.linear(dt, delta_proj_weight).transpose(1, 2).float()  # (batch, d_inner, length)
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if keep is not None:
        delta = delta * keep
    # Kernels such as mamba-ssm's want delta in u's dtype (bf16 under autocast).
    delta = delta.to(u.dtype)
    y = scan(u, delta, A, B.transpose(1, 2), C.transpose(1, 2), D, z, None, False)
    return F.linear(y.transpose(1, 2).to(out_proj_weight.dtype), out_proj_weight, out_proj_bias)


def mamba_mixer_with(
    inner: Callable[..., Tensor],
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
    """The whole mixer, x (batch, length, d_model) -> (batch, length, d_model), as in_proj followed by a
    backend's ``mamba_inner_fn``: for backends without a fused one."""
    xz = F.linear(x, in_proj_weight, in_proj_bias).transpose(1, 2)  # (batch, 2 * d_inner, length)
    return inner(
        xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias, A, D,
        delta_bias, mask, delta_softplus,
    )  # fmt: skip
