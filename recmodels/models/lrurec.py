"""LRURec (Yue et al., "Linear Recurrent Units for Sequential Recommendation", WSDM 2024): embedding -> dropout
-> LayerNorm -> N x [post-norm linear recurrent unit + FFN].

The linear recurrent unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences")
keeps a complex state of width H per user and advances it by h_t = lambda * h_{t-1} + gamma * (B x_t + b),
lambda a learned complex diagonal inside the unit disc (modulus exp(-nu), phase theta), and reads
y_t = Re(C h_t + c). Being linear in h, a whole window is computed in parallel (``linear_recurrence``, chunk by
chunk with powers of lambda) and a served user advances one event at a time from the state (``step``); both
give the same outputs, which is what lets a model trained on windows serve a lifelong history in O(1) per event.

Read against the reference (github.com/yueqirex/LRURec, ``model/lru.py`` and ``trainer/``), the same: state
width 2 * d_model; the ring initialisation (modulus uniform in area on [r_min, r_max] = [0.8, 0.99], phase
uniform in [0, 2 pi)), nu, theta and gamma stored as logs in one (3, H) ``params_log`` (so our optimizer, like
theirs, applies weight decay to it); gamma initialised to sqrt(1 - |lambda|^2) and learned; the residual and
post-norm LayerNorm around the unit and around the GELU feed-forward (4 * d_model); dropout on the embedding,
the unit's output and inside and after the feed-forward; LayerNorm after the embedding dropout; every weight
and bias except the norms' and ``params_log`` drawn from N(0, 0.02) truncated to +-0.04; tied item embeddings.
Where it differs:
- B and C are real ``nn.Linear`` layers holding [Re | Im] of the reference's complex ones (in_proj (2H, d)
  gives Re and Im of B x + b; out_proj (d, 2H) holds [Re C, -Im C] and Re c, so Re(C h + c) is one real
  product): the same function and the same initial distribution, but only real parameters, so checkpoints,
  AdamW, gradient clipping and DDP see what they see for every other model. The reference's imaginary
  output bias, which never reaches Re(.), is left out.
- The scan, not the reference's recursive halving over a length padded to a power of two: on the CPU one
  sequential pass per user over real [Re | Im] halves (``recmodels/ops/lru_scan.py``, O(L) work per channel),
  elsewhere chunked powers of lambda (``linear_recurrence``, O(L * chunk) work, parallel over time); all three
  compute the recurrence up to float rounding.
- Padding: pads (a prefix of each row) get no input and leave the state unchanged, so an output never
  depends on how much padding precedes it; the reference also stops the carry at pads, but computes outputs
  at padded positions from the padding item's embedding and scores the padding item as a class.
- One ``dropout`` rate for the unit's output and the rest (the reference has two settings, both 0.2).
- No per-item output bias (the reference adds a learned bias to every score): the project's losses, ranking
  and serving score hidden states against ``item_vectors`` alone.
- The padding row of the item table is zero and gets no gradient (the reference trains it as a negative).
- The unit runs in float32 (float64 for a float64 model) with autocast off, as the reference does in
  complex64; the feed-forward follows the run's autocast.
The training recipe and its differences (AdamW eps, clipping, validation schedule, seen items at ranking) are
data, in ``benchmarks/literature_parity.py`` (``LRUREC_RECIPE``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from recmodels.models.base import PADDING_ITEM, FeedForward, SequentialRecommender, real_events
from recmodels.models.dropout import Dropout

try:
    from recmodels.ops.lru_scan import linear_recurrence_cpu
except ImportError:  # no Numba here: the chunked scan runs on the CPU as well
    linear_recurrence_cpu = None

SCAN_CHUNK = 32  # steps per chunk of the parallel scan: its work per event grows with it, its sequential steps shrink
INIT_STD = 0.02  # the reference's truncated normal, cut at two standard deviations

LRUState = Tensor  # (n_layers, B, H, 2): each layer's complex state as (real, imaginary) float pairs


@dataclass(frozen=True)
class LRURecConfig:
    d_model: int = 64
    n_layers: int = 2
    max_len: int = 512
    dropout: float = 0.2
    expand: int = 2  # complex state width H as a multiple of d_model (the reference: 2)
    ffn_multiplier: int = 4
    r_min: float = 0.8  # moduli of lambda start uniform (in area) on the ring [r_min, r_max]
    r_max: float = 0.99
    item_dtype: str = "float32"


def linear_recurrence(
    u: Tensor, log_lambda: Tensor, real: Tensor, start: Tensor | None = None, chunk: int = SCAN_CHUNK
) -> tuple[Tensor, Tensor]:
    """h_t = exp(log_lambda) * h_{t-1} + u_t along each row from h = ``start`` (zeros when None), in parallel.

    u (B, L, H) complex, zero on pads; log_lambda (H,) complex; real (B, L) bool, its False entries (pads) a
    prefix of each row: a pad leaves h as it was. Returns h (B, L, H) and the state after the row (B, H).
    Within a chunk of T steps h is a (T, T) lower-triangular product with the powers lambda^(t - s), each
    computed as exp((t - s) log lambda), not by repeated products; chunks are chained by their last state.
    """
    batch, length, width = u.shape
    state = u.new_zeros(batch, width) if start is None else start
    if length == 0:
        return u, state
    chunk = min(chunk, length)
    extra = -length % chunk
    if extra:  # more pads on the left keep the pads a prefix
        u = torch.cat([u.new_zeros(batch, extra, width), u], dim=1)
        real = torch.cat([real.new_zeros(batch, extra), real], dim=1)
    chunks = u.shape[1] // chunk
    u = u.reshape(batch, chunks, chunk, width)
    steps = torch.arange(chunk + 1, device=u.device)
    powers = torch.exp(steps[:, None].to(log_lambda.real.dtype) * log_lambda)  # (T + 1, H): lambda^0 .. lambda^T
    lag = steps[:chunk, None] - steps[None, :chunk]  # (T, T): t - s
    kernel = torch.where((lag >= 0)[..., None], powers[lag.clamp(min=0)], 0)  # (T, T, H), zero above the diagonal
    local = torch.einsum("tsh,bnsh->bnth", kernel, u)  # (B, n, T, H): each chunk from a zero state
    # Pads are a prefix, so a state entering a chunk is multiplied by lambda once per real event up to t.
    decay = powers[real.reshape(batch, chunks, chunk).cumsum(dim=-1)]  # (B, n, T, H)
    entering = []
    # Unbound once: indexing the big tensors per chunk would cost a zero-filled copy of each in the backward.
    for chunk_decay, chunk_last in zip(decay[:, :, -1].unbind(1), local[:, :, -1].unbind(1), strict=True):
        entering.append(state)
        state = chunk_decay * state + chunk_last
    h = local + decay * torch.stack(entering, dim=1)[:, :, None]  # (B, n, T, H)
    return h.reshape(batch, chunks * chunk, width)[:, extra:], state


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class LinearRecurrentUnit(nn.Module):
    """x (B, L, d_model) real -> Re(C h + c) (B, L, d_model), h_t = lambda h_{t-1} + gamma (B x_t + b) complex (H,);
    its state crosses the boundary as (B, H, 2) (real, imaginary) floats."""

    def __init__(self, d_model: int, d_state: int, r_min: float, r_max: float) -> None:
        super().__init__()
        if not 0.0 < r_min <= r_max < 1.0:
            raise ValueError(f"need 0 < r_min <= r_max < 1 for a stable recurrence, got r_min {r_min}, r_max {r_max}")
        self.d_state = d_state
        self.in_proj = nn.Linear(d_model, 2 * d_state)  # [Re | Im] of B x + b
        self.out_proj = nn.Linear(2 * d_state, d_model)  # [Re C, -Im C] [Re h; Im h] + Re c = Re(C h + c)
        # Ring initialisation: |lambda|^2 uniform on [r_min^2, r_max^2] (uniform in area), phase in [0, 2 pi).
        nu = -0.5 * torch.log(torch.rand(d_state) * (r_max**2 - r_min**2) + r_min**2)
        theta = 2 * math.pi * torch.rand(d_state).clamp(min=1e-7)  # the log below needs a positive phase
        gamma = torch.sqrt(-torch.expm1(-2 * nu))  # sqrt(1 - |lambda|^2): unit-variance states for white inputs
        self.params_log = nn.Parameter(torch.stack([nu.log(), theta.log(), gamma.log()]))  # (3, H)

    def log_lambda(self) -> Tensor:
        """(H,) complex: log lambda = -nu + i theta, so |lambda| = exp(-nu) < 1 whatever the parameters."""
        nu_log, theta_log, _ = self.params_log
        return torch.complex(-nu_log.exp(), theta_log.exp())

    def _halves(self, x: Tensor, real: Tensor) -> Tensor:
        """gamma (B x + b) as real [Re | Im] halves (..., 2H), zero where ``real`` is False."""
        gamma = self.params_log[2].exp().repeat(2)  # scales Re and Im alike
        return self.in_proj(x) * (gamma * real[..., None].to(gamma.dtype))

    def _inputs(self, x: Tensor, real: Tensor) -> Tensor:
        """The same as complex (..., H)."""
        re, im = self._halves(x, real).chunk(2, dim=-1)
        return torch.complex(re, im)

    def _outputs(self, h: Tensor) -> Tensor:
        return self.out_proj(torch.cat([h.real, h.imag], dim=-1))

    def forward(self, x: Tensor, real: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, L, d_model), real (B, L) bool, state (B, H, 2) (real, imaginary) or None -> (B, L, d_model), state."""
        dtype = _compute_dtype(x.dtype)
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(dtype)
            if x.device.type == "cpu" and linear_recurrence_cpu is not None:
                return self._forward_cpu(x, real, state)
            u = self._inputs(x, real)  # (B, L, H)
            start = None if state is None else torch.view_as_complex(state.contiguous())
            h, last = linear_recurrence(u, self.log_lambda(), real, start)
            return self._outputs(h), torch.view_as_real(last)

    def _forward_cpu(self, x: Tensor, real: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """The same on CPU tensors, through the sequential kernel on [Re | Im] halves (``ops/lru_scan.py``)."""
        u = self._halves(x, real)  # (B, L, 2H)
        lam = self.log_lambda().exp()
        start = None if state is None else state.transpose(1, 2).reshape(state.shape[0], -1)  # (B, 2H)
        h, last = linear_recurrence_cpu(u, lam.real, lam.imag, real, start)
        return self.out_proj(h), last.view(-1, 2, self.d_state).transpose(1, 2)

    def step(self, x: Tensor, real: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One event per user, the recurrence itself: x (B, d_model), real (B,), state (B, H, 2)."""
        dtype = _compute_dtype(x.dtype)
        with torch.autocast(x.device.type, enabled=False):
            u = self._inputs(x.to(dtype), real)  # (B, H)
            state = torch.view_as_complex(state.contiguous())
            advanced = self.log_lambda().exp() * state + u
            state = torch.where(real[:, None], advanced, state)
            return self._outputs(state), torch.view_as_real(state)


class LRUBlock(nn.Module):
    """LayerNorm(x + dropout(LRU(x))) then LayerNorm(h + dropout(FFN(h))): the reference's post-norm block."""

    def __init__(self, config: LRURecConfig) -> None:
        super().__init__()
        width = config.expand * config.d_model
        self.recurrence = LinearRecurrentUnit(config.d_model, width, config.r_min, config.r_max)
        self.recurrence_norm = nn.LayerNorm(config.d_model)
        self.ffn = FeedForward(config.d_model, config.ffn_multiplier * config.d_model, config.dropout)
        self.ffn_norm = nn.LayerNorm(config.d_model)
        self.dropout = Dropout(config.dropout)

    def _after(self, x: Tensor, mixed: Tensor) -> Tensor:
        h = self.recurrence_norm(x + self.dropout(mixed))
        return self.ffn_norm(h + self.dropout(self.ffn(h)))

    def forward(self, x: Tensor, real: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        mixed, state = self.recurrence(x, real, state)
        return self._after(x, mixed), state

    def step(self, x: Tensor, real: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        mixed, state = self.recurrence.step(x, real, state)
        return self._after(x, mixed), state


class LRURec(SequentialRecommender):
    supports_streaming = True

    def __init__(self, num_items: int, config: LRURecConfig | None = None) -> None:
        config = config or LRURecConfig()
        super().__init__(num_items, config.d_model, config.item_dtype)
        self.config = config
        self.d_state = config.expand * config.d_model
        self.embedding_dropout = Dropout(config.dropout)
        self.embedding_norm = nn.LayerNorm(config.d_model)
        self.blocks = nn.ModuleList(LRUBlock(config) for _ in range(config.n_layers))
        self._init_as_reference()

    def _init_as_reference(self) -> None:
        """Every Linear and Embedding weight and bias from N(0, 0.02) cut at +-0.04; norms and lambda as built."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                for parameter in module.parameters(recurse=False):
                    nn.init.trunc_normal_(parameter, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)
        with torch.no_grad():
            self.item_embedding.weight[PADDING_ITEM].zero_()

    def embed(self, items: Tensor) -> Tensor:
        return self.embedding_norm(self.embedding_dropout(self.item_embedding(items)))

    @property
    def state_dtype(self) -> torch.dtype:
        """The recurrence's dtype: the layers' (float32 under half precision; a bfloat16 item table is read as
        float32 whatever it stores)."""
        return _compute_dtype(self.embedding_norm.weight.dtype)

    def init_state(self, batch: int) -> LRUState:
        device = self.item_embedding.weight.device
        return torch.zeros(self.config.n_layers, batch, self.d_state, 2, device=device, dtype=self.state_dtype)

    def forward(self, items: Tensor) -> Tensor:
        hidden, _ = self._run(items, None)
        return hidden

    def forward_with_state(self, items: Tensor, state: LRUState) -> tuple[Tensor, LRUState]:
        """A chunk of items (B, L), left padded, continuing each user's history from ``state``."""
        return self._run(items, state)

    def _run(self, items: Tensor, state: LRUState | None) -> tuple[Tensor, LRUState]:
        real = real_events(items)  # (B, L)
        x = self.embed(items)  # (B, L, D)
        new_state = []
        for index, block in enumerate(self.blocks):
            x, layer_state = block(x, real, None if state is None else state[index])
            new_state.append(layer_state)
        return x, torch.stack(new_state)

    def step(self, item: Tensor, state: LRUState) -> tuple[Tensor, LRUState]:
        """One new event per user (B,) -> hidden (B, D) and the new state, by the recurrence itself (no scan);
        item 0 leaves a user's state as it was."""
        real = item != PADDING_ITEM
        x = self.embed(item)  # (B, D)
        new_state = []
        for index, block in enumerate(self.blocks):
            x, layer_state = block.step(x, real, state[index])
            new_state.append(layer_state)
        return x, torch.stack(new_state)
