"""Full-ranking evaluation: every validation/test target ranked against the whole catalogue.

Each target is scored from its full prior history: streaming models (RecMamba, GRU4Rec, Mamba4Rec, LRURec)
encode each user's history once, chunk by chunk with the state carried over, and read the hidden state
just before each target; attention models see exactly the last ``max_len`` events before each target
(targets in a user's first ``max_len`` events share one encoding of that prefix; later targets get
their own window, since a shared window would give them a different context than truncation does).

Under the global time split a target's prior history holds only events strictly earlier than it: it ends
before the first event at the target's own timestamp. Simultaneous events have no order (the export keeps
the source's row order among them, which a model could learn), so neither is read to predict the other, as
in training (``recmodels.training.windows``). Leave-one-out keeps the reference's stable order: there the
prior history is every event before the target's position, as published results count it.

Ranks are pessimistic on ties: rank = 1 + #items scoring higher + #other items scoring equal, so a
model that scores everything alike gets the worst rank, never the best.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from recmodels.data.split_data import SPLIT_CODES, SplitData
from recmodels.evaluation.states import UserStates
from recmodels.evaluation.topk import SeenItems, blockwise_ranks
from recmodels.models.base import SequentialRecommender
from recmodels.training.progress import ProgressLog

# Prior-history-length buckets: a fixed half-octave ladder (x1.5, x1.33 alternately), so that the buckets of two
# datasets or two refreshes mean the same, and any dataset fills several of them (2k-5k events: 2048-3072,
# 3072-4096, 4096-6144). Buckets without targets are left out rather than reported as NaN.
HISTORY_EDGES = (0, 128, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 24576, 32768)
# Events per forward_with_state call when streaming a history: most histories fit in one chunk; longer
# ones carry the state over, which costs an extra O(d_inner * d_state) per event in the Mamba mixer.
STREAM_CHUNK = 8192
TOKENS_PER_BATCH = 32768  # padded events encoded per batch: bounds activation memory
SCORE_ROWS = 1024  # targets scored against the catalogue at once: bounds the (rows, items) matrix
SAMPLED_PREFIX = "sampled"


@dataclass(frozen=True)
class TargetRanks:
    """Every ranked target's outcome: enough to recompute any metric, interval or paired test without the
    model. Targets are identified across models by (user_id, position), which the split fixes."""

    user_id: np.ndarray  # (T,) int64, the export's dense user id
    position: np.ndarray  # (T,) int64, the target's index in the history (its history-length bucket)
    item: np.ndarray  # (T,) int64
    timestamp: np.ndarray  # (T,) int64, ms since the epoch
    rank: np.ndarray  # (T,) int64, 1 = best, pessimistic on ties

    COLUMNS = ("user_id", "position", "item", "timestamp", "rank")

    @classmethod
    def of(cls, data: SplitData, targets: Targets, ranks: np.ndarray) -> TargetRanks:
        events = data.offsets[targets.rows] + targets.positions
        user_ids = data.user_ids[targets.rows].astype(np.int64)
        return cls(user_ids, targets.positions, targets.items, data.timestamps[events].astype(np.int64), ranks)

    @property
    def keys(self) -> np.ndarray:
        """One int64 per target, equal for the same target in two evaluations of one split."""
        return self.user_id * 2**32 + self.position

    def bucket(self) -> np.ndarray:
        """Each target's history-length bucket name (``len_02048_03072``)."""
        names = np.array([name for name, _, _ in history_buckets()])
        return names[np.searchsorted(HISTORY_EDGES, self.position, side="right") - 1]

    def to_table(self) -> pa.Table:
        columns = {name: pa.array(getattr(self, name), pa.int64()) for name in self.COLUMNS}
        return pa.table({**columns, "bucket": pa.array(self.bucket(), pa.string())})

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.to_table(), path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> TargetRanks:
        table = pq.read_table(path, columns=list(cls.COLUMNS))
        return cls(*(table.column(name).to_numpy().astype(np.int64) for name in cls.COLUMNS))


@dataclass(frozen=True)
class EvalResult:
    overall: dict[str, float]
    by_bucket: dict[str, dict[str, float]] = field(default_factory=dict)
    num_targets: int = 0
    seconds: float = 0.0
    ranks: TargetRanks | None = field(default=None, compare=False, repr=False)  # not kept in as_dict
    encode_seconds: float = 0.0  # of ``seconds``: encoding the targets' histories (the rest is ranking)

    def as_dict(self) -> dict:
        return {
            "overall": dict(self.overall),
            "by_bucket": {k: dict(v) for k, v in self.by_bucket.items()},
            "num_targets": self.num_targets,
            "seconds": self.seconds,
            "encode_seconds": self.encode_seconds,
        }

    @classmethod
    def from_dict(cls, values: dict) -> EvalResult:
        return cls(
            values["overall"],
            values["by_bucket"],
            values["num_targets"],
            values["seconds"],
            encode_seconds=values.get("encode_seconds", 0.0),
        )


@dataclass(frozen=True)
class Targets:
    """The targets to score: user row, position in the history (its identity and history-length bucket),
    item, and the prior history it is predicted from: the first ``history_lengths`` events of the user's
    history (its position, or fewer under the global time split when earlier events share its timestamp)."""

    rows: np.ndarray  # (T,) int64
    positions: np.ndarray  # (T,) int64, >= 1
    items: np.ndarray  # (T,) int64
    history_lengths: np.ndarray  # (T,) int64, 1..positions


def select_targets(data: SplitData, split: str, max_targets: int | None = None) -> Targets:
    """Targets of a split, skipping those with an empty prior history (nothing to predict them from).

    ``max_targets`` keeps a deterministic random subset (seed 0), still ranked over the full catalogue: for
    validation, which runs after every epoch, the targets of whole users taken in a random order (the last one
    cut short), since a stateful model encodes a user's history once for all its targets and so pays per user;
    for the test, targets drawn one by one, whose interval is narrower for the same count.
    """
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    events = np.flatnonzero(data.split == SPLIT_CODES[split])
    rows = np.searchsorted(data.offsets, events, side="right") - 1
    lengths = prior_history_lengths(data, events, rows)
    keep = lengths > 0
    events, rows, lengths = events[keep], rows[keep], lengths[keep]
    if max_targets is not None and len(events) > max_targets:
        rng = np.random.default_rng(0)
        if split == "valid":
            user_rank = rng.permutation(data.num_users)[rows]  # each user's place in a random order of users
            chosen = np.sort(np.argsort(user_rank, kind="stable")[:max_targets])
        else:
            chosen = np.sort(rng.choice(len(events), size=max_targets, replace=False))
        events, rows, lengths = events[chosen], rows[chosen], lengths[chosen]
    positions = events - data.offsets[rows]
    items = data.items[events].astype(np.int64)
    return Targets(rows.astype(np.int64), positions.astype(np.int64), items, lengths.astype(np.int64))


def prior_history_lengths(data: SplitData, events: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """How many of its user's events each of ``events`` (flat indices, in user ``rows``) is predicted from:
    those before it, and under the global time split only those strictly earlier than its timestamp."""
    starts = data.offsets[rows]
    ends = np.array(events, dtype=np.int64)
    if data.metadata.get("split_mode") == "global_time":
        moments = data.timestamps[ends]
        tied = np.flatnonzero(ends > starts)
        while len(tied):  # step back over the events at the target's moment, a step per simultaneous event
            tied = tied[data.timestamps[ends[tied] - 1] == moments[tied]]
            ends[tied] -= 1
            tied = tied[ends[tied] > starts[tied]]
    return ends - starts


@dataclass(frozen=True)
class Window:
    """Encode events [start, end) of one user; target j reads the hidden state of event history_lengths[j] - 1."""

    row: int
    start: int
    end: int
    target_ids: np.ndarray
    read_at: np.ndarray  # index into the window of the event just before each target


def plan_windows(targets: Targets, streaming: bool, max_len: int, encoded: np.ndarray | None = None) -> list[Window]:
    """The encodings that give every target exactly its prior history (the last ``max_len`` events of it
    for a model that is not ``streaming``). A streaming user whose first ``encoded[row]`` events an earlier
    evaluation encoded (``UserStates.ends``) starts after them, when every target of it reads a later event."""
    order = np.lexsort((targets.history_lengths, targets.rows))
    windows = []
    boundaries = np.flatnonzero(np.diff(targets.rows[order])) + 1
    for group in np.split(order, boundaries):
        if not len(group):
            continue
        row, lengths = int(targets.rows[group[0]]), targets.history_lengths[group]
        if streaming:  # the whole history up to the last target's, streamed once
            start = int(encoded[row]) if encoded is not None and encoded[row] < lengths.min() else 0
            windows.append(Window(row, start, int(lengths.max()), group, lengths - 1 - start))
            continue
        early = lengths <= max_len  # prefix targets: truncation leaves their context whole
        if early.any():
            windows.append(Window(row, 0, int(lengths[early].max()), group[early], lengths[early] - 1))
        for target_id, length in zip(group[~early], lengths[~early], strict=True):
            windows.append(
                Window(row, int(length) - max_len, int(length), np.array([target_id]), np.array([max_len - 1]))
            )
    return windows


def _length(window: Window) -> int:
    return window.end - window.start


def _carried_length(window: Window, states: UserStates | None) -> int | None:
    """The length of a window that continues a kept state (it must not be padded), else None."""
    return _length(window) if states is not None and window.start > 0 else None


def _padded_batch(
    data: SplitData, windows: Sequence[Window], device: torch.device, timestamps: bool
) -> tuple[Tensor, Tensor | None, np.ndarray]:
    """(items (B, W), their timestamps (B, W) or None unless ``timestamps``, left padding per row)."""
    width = max(w.end - w.start for w in windows)
    batch = np.zeros((len(windows), width), dtype=np.int64)
    times = np.zeros_like(batch) if timestamps else None
    pad = np.empty(len(windows), dtype=np.int64)
    for i, w in enumerate(windows):
        history = data.history(w.row)[w.start : w.end]
        pad[i] = width - len(history)
        batch[i, pad[i] :] = history
        if times is not None:
            first = data.offsets[w.row]
            times[i, pad[i] :] = data.timestamps[first + w.start : first + w.end]
    return torch.from_numpy(batch).to(device), None if times is None else torch.from_numpy(times).to(device), pad


@torch.no_grad()
def encode_targets(
    model: SequentialRecommender,
    data: SplitData,
    targets: Targets,
    device: torch.device,
    stream_chunk: int = STREAM_CHUNK,
    what: str = "encoding histories",
    states: UserStates | None = None,
) -> Tensor:
    """(T, D) hidden state from which each target is predicted; progress is logged as ``what``, in events
    encoded (windows go shortest first, so targets would make a poor clock). A model that
    ``uses_timestamps`` also gets the events' timestamps. A streaming model with ``states`` continues each
    user from its kept state and leaves there its state after this evaluation's events."""
    streaming = model.supports_streaming
    states = states if streaming else None
    windows = plan_windows(targets, streaming, model.config.max_len, None if states is None else states.ends)
    windows.sort(key=_length)
    progress = ProgressLog(what, sum(_length(w) for w in windows), "events")
    hidden = torch.empty(len(targets.items), model.config.d_model, device=device)
    index = 0
    while index < len(windows):  # sorted by length: a batch's last window is its longest
        # A window that continues a kept state is never padded: padding between the state and its events would
        # stand in the Mamba convolution's window for the events before them. So no longer window joins it.
        size, carried = 1, _carried_length(windows[index], states)
        while index + size < len(windows):
            following = windows[index + size]
            if (size + 1) * _length(following) > TOKENS_PER_BATCH or (carried and _length(following) > carried):
                break
            carried = carried or _carried_length(following, states)
            size += 1
        batch_windows = windows[index : index + size]
        index += size
        items, times, pad = _padded_batch(data, batch_windows, device, model.uses_timestamps)
        timed = (times,) if model.uses_timestamps else ()
        rows = np.concatenate([np.full(len(w.target_ids), i) for i, w in enumerate(batch_windows)])
        cols = np.concatenate([w.read_at + pad[i] for i, w in enumerate(batch_windows)])
        ids = torch.from_numpy(np.concatenate([w.target_ids for w in batch_windows])).to(device)
        progress.advance(sum(_length(w) for w in batch_windows))
        if streaming:
            users = np.array([w.row for w in batch_windows], dtype=np.int64)
            starts = np.array([w.start for w in batch_windows], dtype=np.int64)
            state = model.init_state(len(batch_windows)) if states is None else states.initial(users, starts)
            for start in range(0, items.shape[1], stream_chunk):
                chunk_hidden, state = model.forward_with_state(items[:, start : start + stream_chunk], state)
                inside = (cols >= start) & (cols < start + chunk_hidden.shape[1])
                picked = chunk_hidden[torch.from_numpy(rows[inside]), torch.from_numpy(cols[inside] - start)]
                hidden[ids[torch.from_numpy(inside).to(device)]] = picked.float()
            if states is not None:  # left padded: every row's last column is its window's last event
                states.keep(users, state, np.array([w.end for w in batch_windows], dtype=np.int64))
        elif all(len(w.read_at) == 1 and w.read_at[0] == _length(w) - 1 for w in batch_windows):
            hidden[ids] = model.forward_last(items, *timed).float()  # one target per window, at its end
        else:
            encoded = model(items, *timed)
            hidden[ids] = encoded[torch.from_numpy(rows), torch.from_numpy(cols)].float()
    return hidden


def _seen_items(data: SplitData, targets: Targets, rows: slice) -> list[np.ndarray]:
    """Per target of ``rows``: the items of its prior history, the target item itself excluded."""
    seen = []
    for target in range(rows.start, rows.stop):
        history = data.history(int(targets.rows[target]))[: targets.history_lengths[target]]
        seen.append(np.setdiff1d(history, [targets.items[target]]))
    return seen


@torch.no_grad()
def full_ranks(
    model: SequentialRecommender,
    hidden: Tensor,
    data: SplitData,
    targets: Targets,
    exclude_seen: bool,
    progress: ProgressLog | None = None,
) -> np.ndarray:
    """Rank of each target among all items 1..num_items (1 = best), pessimistic on ties.

    Scored a block of items at a time (``recmodels.evaluation.topk``), so memory is bounded by the block, not the
    catalogue; a NaN score counts as the worst possible, never as a hit."""
    ranks = np.empty(len(targets.items), dtype=np.int64)
    target_items = torch.from_numpy(targets.items).to(hidden.device)
    weight = model.item_vectors()
    for start in range(0, len(ranks), SCORE_ROWS):
        part = slice(start, min(start + SCORE_ROWS, len(ranks)))
        seen = SeenItems(_seen_items(data, targets, part), hidden.device) if exclude_seen else None
        ranks[part] = blockwise_ranks(hidden[part], weight, target_items[part], seen).cpu().numpy()
        if progress is not None:
            progress.advance(part.stop - part.start)
    return ranks


@torch.no_grad()
def sampled_ranks(
    model: SequentialRecommender, hidden: Tensor, targets: Targets, num_items: int, num_negatives: int
) -> np.ndarray:
    """Rank among 1 positive + ``num_negatives`` uniform negatives (the seed's protocol; comparison only)."""
    generator = torch.Generator().manual_seed(0)
    ranks = np.empty(len(targets.items), dtype=np.int64)
    weights = model.item_vectors()
    for start in range(0, len(ranks), SCORE_ROWS):
        part = slice(start, min(start + SCORE_ROWS, len(ranks)))
        positives = torch.from_numpy(targets.items[part])
        # Uniform over the catalogue without the positive: draw from num_items - 1 ids, skip the positive.
        negatives = torch.randint(1, num_items, (len(positives), num_negatives), generator=generator)
        negatives = negatives + (negatives >= positives[:, None]).long()
        candidates = torch.cat([positives[:, None], negatives], dim=1).to(hidden.device)
        scores = torch.einsum("nd,ncd->nc", hidden[part], weights[candidates].float())
        rank = (scores[:, 1:] >= scores[:, :1]).sum(1) + 1
        ranks[part] = rank.cpu().numpy()
    return ranks


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int], prefix: str = "") -> dict[str, float]:
    """HR@K, NDCG@K (one relevant item: 1 / log2(rank + 1)) and MRR@K averaged over targets."""
    metrics: dict[str, float] = {}
    ranks = np.asarray(ranks, dtype=np.float64)
    for k in ks:
        hit = ranks <= k
        metrics[f"{prefix}hr_{k}"] = float(hit.mean()) if len(ranks) else math.nan
        metrics[f"{prefix}ndcg_{k}"] = (
            float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean()) if len(ranks) else math.nan
        )
        metrics[f"{prefix}mrr_{k}"] = float(np.where(hit, 1.0 / ranks, 0.0).mean()) if len(ranks) else math.nan
    return metrics


def bucket_name(low: int, high: int | None) -> str:
    """``len_02048_03072`` (or ``len_32768_up``): zero-padded, so that names sort by length as text does."""
    return f"len_{low:05d}_{high:05d}" if high is not None else f"len_{low:05d}_up"


def history_buckets() -> list[tuple[str, int, int | None]]:
    """(name, low, high) of each bucket: low <= prior history length < high; the last has no high."""
    highs = [*HISTORY_EDGES[1:], None]
    return [(bucket_name(low, high), low, high) for low, high in zip(HISTORY_EDGES, highs, strict=True)]


def bucket_metrics(ranks: np.ndarray, history_lengths: np.ndarray, ks: Sequence[int]) -> dict[str, dict[str, float]]:
    """Metrics of the targets in each non-empty history-length bucket, shortest histories first."""
    by_bucket = {}
    for name, low, high in history_buckets():
        inside = (history_lengths >= low) & (history_lengths < (high if high is not None else np.inf))
        if inside.any():
            by_bucket[name] = {"num_targets": float(inside.sum()), **ranking_metrics(ranks[inside], ks)}
    return by_bucket


def evaluate(
    model: SequentialRecommender,
    data: SplitData,
    split: str = "valid",
    ks: Sequence[int] = (5, 10, 20),
    exclude_seen: bool = False,
    device: torch.device | str | None = None,
    max_targets: int | None = None,
    sampled_negatives: int | None = None,
    stream_chunk: int = STREAM_CHUNK,
    states: UserStates | None = None,
) -> EvalResult:
    """Full-ranking HR/NDCG/MRR@K overall and per prior-history-length bucket.

    ``sampled_negatives`` (e.g. 1000) adds metrics prefixed ``sampled_`` from the 1 + N sampled protocol,
    only to compare with numbers reported that way; the unprefixed metrics are always full ranking.
    ``stream_chunk``: events per chunk when streaming models carry their state through a long history.
    ``states``: a streaming model continues each user from its state kept by an earlier evaluation with the
    same weights and keeps its state after this one (``recmodels.evaluation.states``); same ranks.
    """
    began = time.perf_counter()
    device = torch.device(device) if device is not None else model.item_embedding.weight.device
    was_training = model.training
    model.eval()
    try:
        targets = select_targets(data, split, max_targets)
        count = len(targets.items)
        hidden = encode_targets(model, data, targets, device, stream_chunk, f"{split}: encoding histories", states)
        encode_seconds = time.perf_counter() - began
        ranking = ProgressLog(f"{split}: ranking {data.num_items:,} items", count, "targets")
        ranks = full_ranks(model, hidden, data, targets, exclude_seen, ranking)
        overall = ranking_metrics(ranks, ks)
        if sampled_negatives:
            sampled = sampled_ranks(model, hidden, targets, data.num_items, sampled_negatives)
            overall.update(ranking_metrics(sampled, ks, prefix=f"{SAMPLED_PREFIX}_"))
        by_bucket = bucket_metrics(ranks, targets.positions, ks)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - began
    ranked = TargetRanks.of(data, targets, ranks)
    return EvalResult(overall, by_bucket, len(targets.items), seconds, ranked, encode_seconds)
