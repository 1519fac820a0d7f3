"""The Mamba mixer's one interface: its weights, its recurrent state, and the composition backends share.

Every backend implements ``mix(x, weights, mask=None, state=None) -> (y, state)``: x (batch, length,
d_model) is the block's normalised input, ``weights`` a ``MixerWeights``, ``mask`` (batch, length) True on
real events, ``state`` the ``MixerState`` the sequence continues from (None: a fresh start). It returns
the output (batch, length, d_model) and the state after the last step. Training (no state), streaming a
long history in chunks and serving one event (length 1) are the same call, so the mixer's arithmetic is
written once per backend.

Padding is masked outside the kernels, which then need no mask support: the conv input is zeroed there
(a real event's window sees zeros, exactly like the conv's own left padding), and delta = softplus(dt +
bias) is zeroed there, so exp(delta * A) = 1 and delta * B * u = 0: a padded step leaves the SSM state
untouched whatever it holds. u is zeroed too, so padded outputs carry no D * u term. A row with no real
event in a call keeps its conv state as well, so a padded step changes no state at all.

``mix_with`` builds ``mix`` from a backend's scan and conv, for backends without a fused mixer (the float64
reference, the plain-PyTorch path and mamba-ssm's kernels); ``scan_with_state`` adapts a
``selective_scan_fn`` that takes an initial state, ``scan_from_zero_state`` one that cannot (mamba-ssm's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


class MixerWeights(NamedTuple):
    """The mixer's tensors by name, in mamba-ssm's shapes (a state dict maps onto them one to one)."""

    in_proj_weight: Tensor  # (2 * d_inner, d_model)
    in_proj_bias: Tensor | None  # (2 * d_inner,)
    conv_weight: Tensor  # (d_inner, 1, d_conv), as nn.Conv1d holds it
    conv_bias: Tensor | None  # (d_inner,)
    x_proj_weight: Tensor | None  # (dt_rank + 2 * d_state, d_inner); None: not selective
    dt_proj_weight: Tensor | None  # (d_inner, dt_rank); None: not selective
    dt_bias: Tensor  # (d_inner,): softplus(dt_proj(dt) + dt_bias) is the step size
    A: Tensor  # (d_inner, d_state), negative
    D: Tensor  # (d_inner,)
    out_proj_weight: Tensor  # (d_model, d_inner)
    out_proj_bias: Tensor | None  # (d_model,)
    B: Tensor | None = None  # (d_state,): the constant B when not selective, shared by the channels
    C: Tensor | None = None  # (d_state,): the constant C when not selective

    @property
    def selective(self) -> bool:
        """Whether delta, B and C depend on the input (Mamba) or are constants (a time-invariant SSM)."""
        return self.x_proj_weight is not None

    @property
    def d_inner(self) -> int:
        return self.A.shape[0]

    @property
    def d_state(self) -> int:
        return self.A.shape[1]

    @property
    def dt_rank(self) -> int:
        return self.dt_proj_weight.shape[1] if self.selective else 0

    @property
    def d_conv(self) -> int:
        return self.conv_weight.shape[-1]


class MixerState(NamedTuple):
    """A sequence's recurrent state in one mixer: the last (d_conv - 1) conv inputs and the SSM state."""

    conv: Tensor  # (batch, d_inner, d_conv - 1)
    ssm: Tensor  # (batch, d_inner, d_state), float32 (float64 when the mixer runs in float64)

    @staticmethod
    def zeros(weights: MixerWeights, batch: int, device: torch.device | None = None) -> MixerState:
        device = device or weights.A.device
        conv = torch.zeros(batch, weights.d_inner, weights.d_conv - 1, device=device, dtype=weights.conv_weight.dtype)
        ssm_dtype = torch.float64 if weights.A.dtype == torch.float64 else torch.float32
        return MixerState(conv, torch.zeros(batch, weights.d_inner, weights.d_state, device=device, dtype=ssm_dtype))


class Scan(Protocol):
    """A selective scan with mamba-ssm's argument names, continuing from ``initial_state`` (or zeros)."""

    def __call__(
        self, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, *, D: Tensor, z: Tensor,
        initial_state: Tensor | None,
    ) -> tuple[Tensor, Tensor]: ...  # fmt: skip


Conv = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def causal_depthwise_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """SiLU(causal depthwise conv1d): x (batch, channels, length), weight (channels, 1, width)."""
    width = weight.shape[-1]
    out = F.conv1d(x, weight, bias, padding=width - 1, groups=x.shape[1])[..., : x.shape[-1]]
    return F.silu(out)


def next_conv_state(state: MixerState | None, weights: MixerWeights, inputs: Tensor, mask: Tensor | None) -> Tensor:
    """The last d_conv - 1 conv inputs after a call; a row with no real event keeps the ones it had.

    inputs (batch, d_inner, length) are the masked conv inputs of the call.
    """
    width = weights.d_conv - 1
    previous = state.conv.to(inputs.dtype) if state is not None else inputs.new_zeros(*inputs.shape[:2], width)
    latest = torch.cat([previous, inputs[..., inputs.shape[-1] - min(width, inputs.shape[-1]) :]], dim=-1)
    latest = latest[..., latest.shape[-1] - width :]
    if mask is None:
        return latest
    return torch.where(mask.any(dim=-1)[:, None, None], latest, previous)


def ssm_dtype(state: Tensor) -> Tensor:
    """SSM states are kept in float32 (float64 when the mixer runs in float64), whatever the kernel used."""
    return state if state.dtype == torch.float64 else state.float()


def mix_with(
    scan: Scan,
    conv: Conv,
    x: Tensor,
    weights: MixerWeights,
    mask: Tensor | None = None,
    state: MixerState | None = None,
) -> tuple[Tensor, MixerState]:
    """``mix`` from a backend's scan and conv: in_proj, causal conv + SiLU, x_proj, dt_proj, the gated
    scan and out_proj, padding masked as the module docstring says."""
    w = weights
    xz = F.linear(x, w.in_proj_weight, w.in_proj_bias).transpose(1, 2)  # (batch, 2 * d_inner, length)
    xs, z = xz.chunk(2, dim=1)  # (batch, d_inner, length) each
    keep = None if mask is None else mask[:, None, :].to(xs.dtype)  # (batch, 1, length)
    if keep is not None:
        xs = xs * keep
    if state is None:
        u = conv(xs, w.conv_weight, w.conv_bias)
    else:  # the carried inputs go in front; their outputs belong to the previous call
        carried = state.conv.to(xs.dtype)
        u = conv(torch.cat([carried, xs], dim=-1), w.conv_weight, w.conv_bias)[..., carried.shape[-1] :]
    if keep is not None:
        u = u * keep
    delta, B, C = _step_and_projections(u, w)
    if keep is not None:
        delta = delta * keep
    # Kernels such as mamba-ssm's want delta in u's dtype (bf16 under autocast).
    y, ssm = scan(
        u, delta.to(u.dtype), w.A, B, C, D=w.D, z=z, initial_state=None if state is None else state.ssm
    )  # fmt: skip
    out = F.linear(y.transpose(1, 2).to(w.out_proj_weight.dtype), w.out_proj_weight, w.out_proj_bias)
    return out, MixerState(next_conv_state(state, w, xs, mask), ssm_dtype(ssm))


def _step_and_projections(u: Tensor, w: MixerWeights) -> tuple[Tensor, Tensor, Tensor]:
    """delta (batch, d_inner, length) in float32 and B, C (batch, d_state, length): from u through x_proj
    and dt_proj when selective, the learned constants broadcast over batch and time otherwise."""
    batch, _, length = u.shape
    if w.selective:
        x_dbl = F.linear(u.transpose(1, 2), w.x_proj_weight)  # (batch, length, dt_rank + 2 * d_state)
        dt, B, C = x_dbl.split([w.dt_rank, w.d_state, w.d_state], dim=-1)
        delta = F.softplus(F.linear(dt, w.dt_proj_weight).transpose(1, 2).float() + w.dt_bias.float()[:, None])
        return delta, B.transpose(1, 2), C.transpose(1, 2)
    delta = F.softplus(w.dt_bias.float())[None, :, None].expand(batch, w.d_inner, length)
    B, C = (m.to(u.dtype)[None, :, None].expand(batch, w.d_state, length) for m in (w.B, w.C))
    return delta, B, C


def scan_with_state(scan_fn: Callable[..., tuple[Tensor, Tensor]]) -> Scan:
    """A ``Scan`` from a ``selective_scan_fn`` that takes ``initial_state`` (ours do; mamba-ssm's does not)."""

    def scan(u, delta, A, B, C, *, D, z, initial_state):
        return scan_fn(u, delta, A, B, C, D=D, z=z, return_last_state=True, initial_state=initial_state)

    return scan


def scan_from_zero_state(scan_fn: Callable[..., tuple[Tensor, Tensor]]) -> Scan:
    """A ``Scan`` from mamba-ssm's ``selective_scan_fn``, which always starts from a zero state.

    The initial state's part is linear and added in closed form: it decays by exp(A * cumsum(delta)) and
    is read through C, before the gate, which therefore moves out of the kernel when a state is carried.
    """

    def scan(u, delta, A, B, C, *, D, z, initial_state):
        if initial_state is None or not bool(initial_state.any()):  # a fresh state contributes nothing
            return scan_fn(u, delta, A, B, C, D=D, z=z, return_last_state=True)
        y, last = scan_fn(u, delta, A, B, C, D=D, z=None, return_last_state=True)
        dtype = torch.promote_types(u.dtype, torch.float32)  # float32 at least, as the kernels compute
        h0 = initial_state.to(dtype)
        carried, decay_total = _carried_state_output(h0, delta.to(dtype), A.to(dtype), C.to(dtype))
        y = (y.to(dtype) + carried) * F.silu(z.to(dtype))
        return y.to(u.dtype), last.to(dtype) + decay_total * h0

    return scan


def _carried_state_output(h0: Tensor, delta: Tensor, A: Tensor, C: Tensor, block: int = 256) -> tuple[Tensor, Tensor]:
    """Output of an initial state h0 (B, E, N) through a call, and its total decay (B, E, N).

    y0[b, e, t] = sum_n C[b, n, t] * exp(A[e, n] * sum_{s<=t} delta[b, e, s]) * h0[b, e, n];
    computed in blocks of time so memory stays (B, E, block, N).
    """
    cumulative = delta.cumsum(dim=-1)  # (B, E, L)
    blocks = []
    for start in range(0, delta.shape[-1], block):
        part = cumulative[..., start : start + block]
        decay = torch.exp(part[..., None] * A[:, None, :])  # (B, E, T, N)
        blocks.append(torch.einsum("betn,ben,bnt->bet", decay, h0, C[..., start : start + block]))
    carried = torch.cat(blocks, dim=-1) if blocks else delta.new_zeros(delta.shape)
    decay_total = torch.exp(cumulative[..., -1:] * A) if delta.shape[-1] else torch.ones_like(h0)
    return carried, decay_total
