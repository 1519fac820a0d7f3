"""The Mamba mixer with exactly ``mamba_ssm.Mamba``'s parameters and state-dict names.

Same names and shapes (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj), same initialisation,
so a checkpoint trained on a GPU with mamba-ssm loads here and the reverse. The computation goes
through ``recmodels.ops``, which picks mamba-ssm's kernels on CUDA and our own paths elsewhere.
Padding is masked as described in ``recmodels.ops.compose.mamba_inner_with``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recmodels.ops import mamba_mixer_fn, selective_scan_fn, selective_state_update


class MixerState(NamedTuple):
    """A user's recurrent state in one mixer: the last (d_conv - 1) conv inputs and the SSM state."""

    conv: Tensor  # (B, d_inner, d_conv - 1)
    ssm: Tensor  # (B, d_inner, d_state), float32


class MambaMixer(nn.Module):
    """x (B, L, d_model) -> (B, L, d_model); ``mask`` (B, L) True on real events."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=conv_bias,
            **factory,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        self._init_dt(dt_init, dt_scale, dt_min, dt_max, dt_init_floor)
        # S4D-real initialisation: A = -(1..N) for every channel, stored as its log.
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def _init_dt(self, dt_init: str, dt_scale: float, dt_min: float, dt_max: float, floor: float) -> None:
        """dt_proj as mamba-ssm: so that softplus(bias) is log-uniform in [dt_min, dt_max] at the start."""
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"dt_init must be 'constant' or 'random', got {dt_init!r}")
        log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=floor)
        inverse_softplus = dt + torch.log(-torch.expm1(-dt))
        with torch.no_grad():
            self.dt_proj.bias.copy_(inverse_softplus)
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]

    def A(self) -> Tensor:
        return -torch.exp(self.A_log.float())  # (d_inner, d_state)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return mamba_mixer_fn(
            x,
            self.in_proj.weight,
            self.in_proj.bias,
            self.conv1d.weight,
            self.conv1d.bias,
            self.x_proj.weight,
            self.dt_proj.weight,
            self.out_proj.weight,
            self.out_proj.bias,
            self.A(),
            self.D.float(),
            self.dt_proj.bias.float(),
            mask=mask,
            delta_softplus=True,
        )

    def init_state(self, batch: int, device: torch.device | None = None) -> MixerState:
        device = device or self.A_log.device
        conv = torch.zeros(batch, self.d_inner, self.d_conv - 1, device=device, dtype=self.conv1d.weight.dtype)
        ssm = torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=torch.float32)
        return MixerState(conv, ssm)

    def forward_with_state(self, x: Tensor, mask: Tensor, state: MixerState) -> tuple[Tensor, MixerState]:
        """A chunk (B, L, d_model) continuing from ``state``: equal to running the whole history at once.

        The scan API has no initial state, so the carried state's contribution is added in closed form:
        it decays by exp(A * cumsum(delta)) and is read through C (exact, any scan backend).
        """
        xz = self.in_proj(x).transpose(1, 2)  # (B, 2 * d_inner, L)
        xs, z = xz.chunk(2, dim=1)
        keep = mask[:, None, :].to(xs.dtype)  # (B, 1, L)
        conv_input = torch.cat([state.conv, xs * keep], dim=-1)  # (B, d_inner, d_conv - 1 + L)
        weight = self.conv1d.weight
        u = F.silu(F.conv1d(conv_input, weight, self.conv1d.bias, groups=self.d_inner)) * keep
        x_dbl = self.x_proj(u.transpose(1, 2))  # (B, L, dt_rank + 2N)
        dt, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt).float()).transpose(1, 2) * keep  # (B, d_inner, L)
        A = self.A()
        C = C.transpose(1, 2)  # (B, N, L)
        y, last = selective_scan_fn(u, delta, A, B.transpose(1, 2), C, self.D.float(), None, None, False, True)
        y, last = y.float(), last.float()
        if bool(state.ssm.any()):  # a fresh state (the first chunk) contributes nothing: skip the cost
            carried, decay_total = _carried_state_output(state.ssm, delta, A, C.float())
            y, last = y + carried, last + decay_total * state.ssm
        out = self.out_proj((y * F.silu(z.float())).transpose(1, 2).to(x.dtype))  # (B, L, d_model)
        new_conv = conv_input[..., conv_input.shape[-1] - (self.d_conv - 1) :]
        return out, MixerState(new_conv, last)

    def step(self, x: Tensor, mask: Tensor, state: MixerState) -> tuple[Tensor, MixerState]:
        """One event per user, O(1): x (B, d_model), mask (B,). Returns a new state; the old is unchanged."""
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # (B, d_inner) each
        keep = mask[:, None].to(xs.dtype)
        window = torch.cat([state.conv, (xs * keep)[..., None]], dim=-1)  # (B, d_inner, d_conv)
        conv_out = (window * self.conv1d.weight.squeeze(1)).sum(-1)
        if self.conv1d.bias is not None:
            conv_out = conv_out + self.conv1d.bias
        u = F.silu(conv_out) * keep  # (B, d_inner)
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt).float()) * keep  # padded step: dt = 0 leaves the state as is
        ssm = state.ssm.clone()
        y = selective_state_update(ssm, u, dt, self.A(), B, C, self.D.float(), z, None, False)
        new_conv = torch.where(mask[:, None, None], window[..., 1:], state.conv)
        return self.out_proj(y.to(x.dtype)), MixerState(new_conv, ssm)


def _carried_state_output(h0: Tensor, delta: Tensor, A: Tensor, C: Tensor, block: int = 256) -> tuple[Tensor, Tensor]:
    """Output of an initial state h0 (B, E, N) through a chunk, and its total decay (B, E, N).

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
