"""The Mamba mixer with exactly ``mamba_ssm.Mamba``'s parameters and state-dict names.

Same names and shapes (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj), same initialisation,
so a checkpoint trained on a GPU with mamba-ssm loads here and the reverse. The computation goes
through ``recmodels.ops``, which picks mamba-ssm's kernels on CUDA and our own paths elsewhere.
Every path (training, streaming in chunks, one step) is one call, ``recmodels.ops.mix``, which also
masks padding (see ``recmodels.ops.mixer``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from recmodels.ops import MixerState, MixerWeights, mix

__all__ = ["MambaMixer", "MixerState"]


class MambaMixer(nn.Module):
    """x (B, L, d_model) -> (B, L, d_model); ``mask`` (B, L) True on real events.

    ``selective=False`` is the ablation of Mamba's selection: delta, B and C no longer come from the input
    (no x_proj, no dt_proj) but are learned constants, delta per channel, B and C shared by the channels
    as the selective ones are, so the layer is a linear time-invariant (S4D-style) SSM with everything
    else equal. ``d_conv=0`` drops the causal convolution (u = SiLU(x)).
    """

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
        selective: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if d_conv < 0:
            raise ValueError(f"d_conv must be 0 (no convolution) or more, got {d_conv}")
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.selective = selective
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        if d_conv > 0:
            self.conv1d = nn.Conv1d(
                self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner, padding=d_conv - 1,
                bias=conv_bias, **factory,
            )  # fmt: skip
        else:  # no convolution: u = SiLU(x), as a width-1 identity conv that is not trained
            self.register_buffer("identity_conv", torch.ones(self.d_inner, 1, 1, device=device), persistent=False)
        if selective:
            self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
            self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
            self._init_dt_proj(dt_init, dt_scale, lambda: _initial_dt_bias(self.d_inner, dt_min, dt_max, dt_init_floor))
        else:  # linear time-invariant: delta per channel, B and C shared by the channels as Mamba's are
            self.dt_bias = nn.Parameter(_initial_dt_bias(self.d_inner, dt_min, dt_max, dt_init_floor).to(device))
            self.B = nn.Parameter(torch.ones(d_state, device=device))
            self.C = nn.Parameter(torch.randn(d_state, device=device) * d_state**-0.5)
        # S4D-real initialisation: A = -(1..N) for every channel, stored as its log.
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def _init_dt_proj(self, dt_init: str, dt_scale: float, initial_bias: Callable[[], Tensor]) -> None:
        """dt_proj as mamba-ssm: weights of scale dt_rank^-0.5, bias so softplus(bias) starts in [dt_min, dt_max]."""
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"dt_init must be 'constant' or 'random', got {dt_init!r}")
        dt_bias = initial_bias()  # drawn after the weights, as mamba-ssm does
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt_bias)
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]

    def weights(self) -> MixerWeights:
        """The tensors every backend's ``mix`` takes, by name (A from its log, D and dt's bias in float32)."""
        conv = getattr(self, "conv1d", None)
        return MixerWeights(
            in_proj_weight=self.in_proj.weight,
            in_proj_bias=self.in_proj.bias,
            conv_weight=conv.weight if conv is not None else self.identity_conv,
            conv_bias=conv.bias if conv is not None else None,
            x_proj_weight=self.x_proj.weight if self.selective else None,
            dt_proj_weight=self.dt_proj.weight if self.selective else None,
            dt_bias=(self.dt_proj.bias if self.selective else self.dt_bias).float(),
            A=-torch.exp(self.A_log.float()),
            D=self.D.float(),
            out_proj_weight=self.out_proj.weight,
            out_proj_bias=self.out_proj.bias,
            B=None if self.selective else self.B.float(),
            C=None if self.selective else self.C.float(),
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return mix(x, self.weights(), mask)[0]

    def init_state(self, batch: int, device: torch.device | None = None) -> MixerState:
        return MixerState.zeros(self.weights(), batch, device)

    def forward_with_state(self, x: Tensor, mask: Tensor | None, state: MixerState | None) -> tuple[Tensor, MixerState]:
        """A chunk (B, L, d_model) continuing from ``state`` (None: a fresh start), and the state after it:
        equal to running the whole history at once."""
        return mix(x, self.weights(), mask, state)

    def step(self, x: Tensor, mask: Tensor, state: MixerState) -> tuple[Tensor, MixerState]:
        """One event per user, O(1): x (B, d_model), mask (B,). Returns a new state; the old is unchanged."""
        out, state = mix(x[:, None], self.weights(), mask[:, None], state)
        return out[:, 0], state


def _initial_dt_bias(channels: int, dt_min: float, dt_max: float, floor: float) -> Tensor:
    """A bias whose softplus is log-uniform in [dt_min, dt_max] (mamba-ssm's initialisation of dt)."""
    log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    dt = torch.exp(log_dt).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))  # the inverse of softplus
