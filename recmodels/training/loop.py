"""Next-item training with early stopping, atomic checkpoints and a cost meter (Contract 3).

``train_run`` is the one way to train from a run config: the command line here, the Pipes worker (and the
length sweep through it) and the walk-forward all call it, so that one run config on one split trains the
same model whichever way it was started. It seeds, builds the model from the ``model`` section and ``fit``s
it; ``fit`` picks the device and compiles the kernels in process before its meters start. Loading the data,
logging and reporting stay with each caller. Filling Numba's on-disk kernel cache in a process of its own
is a launcher's job, once before training processes start (``prepare_process``), not each training's.

Every position of every training window predicts the next item. An interrupted run resumes from its
last checkpoint to exactly the result of an uninterrupted one: shuffling is seeded by (seed, epoch),
and the checkpoint holds the model, optimizer, RNG states, best weights and progress.

The command line is ``recmodels/train.py`` (``python -m recmodels.train``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from recmodels.data.split_data import TRAIN, SplitData
from recmodels.evaluation.cost import CostReport, PeakMemory
from recmodels.evaluation.evaluate import EvalResult, evaluate
from recmodels.evaluation.states import UserStates
from recmodels.models import build_model
from recmodels.models.base import SequentialRecommender
from recmodels.training.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from recmodels.training.config import RunConfig, TrainConfig, run_config_class
from recmodels.training.distributed import Ranks, all_sum, barrier, init_from_env, shard_rows
from recmodels.training.distributed import current as current_ranks
from recmodels.training.next_item_loss import NextItemLoss
from recmodels.training.progress import ProgressLog
from recmodels.training.sparse_optim import build_sparse_optimizer, clip_grad_norm
from recmodels.training.threads import apply_thread_budget
from recmodels.training.warmup import kernels_compiled_here, warm_kernel_cache, warm_up
from recmodels.training.windows import Batch, WindowIndex


@dataclass(frozen=True)
class EpochReport:
    epoch: int  # 1-based
    train_loss: float
    valid: dict[str, float]
    epoch_seconds: float  # forward + backward + optimizer step over the epoch, evaluation excluded
    events_per_second: float


@dataclass(frozen=True)
class FitResult:
    best_epoch: int
    epochs: list[EpochReport]
    valid: EvalResult
    test: EvalResult
    cost: CostReport
    stopped_early: bool

    def as_dict(self) -> dict:
        return {
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "epochs": [dataclasses.asdict(report) for report in self.epochs],
            "valid": self.valid.as_dict(),
            "test": self.test.as_dict(),
            "cost": dataclasses.asdict(self.cost),
        }


def resolve_device(name: str, ranks: Ranks | None = None) -> torch.device:
    """The training device; under torchrun each CUDA process gets the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but torch sees no CUDA device")
    if name == "cuda" and ranks is not None and ranks.distributed:
        return torch.device("cuda", ranks.local_rank)
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(model: SequentialRecommender, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no decay on biases, norms, and parameters marked ``_no_weight_decay`` (Mamba's A_log, D).

    With ``sparse_item_updates`` the item embedding gets sparse gradients and a lazy Adam of its own, so a
    step updates only the item rows it touched (``recmodels.training.sparse_optim``)."""
    model.item_embedding.sparse = config.sparse_item_updates  # a model may be trained again with dense updates
    item_table = model.item_embedding.weight if config.sparse_item_updates else None
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter is item_table:
            continue
        if parameter.dim() < 2 or getattr(parameter, "_no_weight_decay", False):
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    if model.item_embedding.weight.dtype == torch.bfloat16 and config.item_optimizer != "rowwise_adagrad":
        raise ValueError(
            "a bfloat16 item table (model.item_dtype) trains with train.sparse_item_updates and "
            "train.item_optimizer rowwise_adagrad"
        )
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if item_table is not None:
        betas = (0.9, config.adam_beta2)
        return build_sparse_optimizer(
            groups, model.item_embedding, config.lr, betas, config.item_optimizer, config.seed
        )
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, config.adam_beta2))


def count_patience(progress: Progress, metric: float, min_improvement: float) -> None:
    """Reset the count of epochs without improvement when ``metric`` beats the mark that last reset it by more
    than ``min_improvement`` (relative), else add one: a curve creeping up by less than that, or wandering in
    its noise, has stopped paying for its epochs. The kept weights are still the best epoch's."""
    mark = progress.patience_mark
    if mark is None or metric > mark + min_improvement * abs(mark):
        progress.patience_mark, progress.epochs_without_improvement = metric, 0
    else:
        progress.epochs_without_improvement += 1


@dataclass
class Progress:
    """Everything besides weights and RNGs that a resumed run needs to continue exactly."""

    next_epoch: int = 1
    best_epoch: int = 0
    best_metric: float = -math.inf
    epochs_without_improvement: int = 0
    patience_mark: float | None = None  # the validation metric that last reset the patience count
    stopped_early: bool = False
    reports: list[dict] = dataclasses.field(default_factory=list)
    best_valid: dict | None = None
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    train_events: int = 0


def _checkpoint_payload(model, optimizer, generator, progress: Progress, best_state) -> dict:
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "sampler_rng": generator.get_state(),
        "best_state": best_state,
        "progress": dataclasses.asdict(progress),
    }
    if torch.cuda.is_available():
        payload["cuda_rng"] = torch.cuda.get_rng_state_all()
    return payload


def _train_epoch(
    model: SequentialRecommender,
    network: torch.nn.Module,
    batches,
    loss_fn: NextItemLoss,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    device: torch.device,
    ranks: Ranks,
    progress: ProgressLog,
) -> tuple[float, int]:
    """One pass over the windows: (mean loss per target, number of targets), over all processes."""
    model.train()
    total_loss, total_targets = 0.0, 0
    for global_batch in batches:
        loss, count, global_count = train_step(model, network, global_batch, loss_fn, optimizer, config, device, ranks)
        total_loss += loss * count
        total_targets += count
        progress.advance(global_count)
    total_loss, total_targets = all_sum(total_loss, device), int(all_sum(total_targets, device))
    return total_loss / max(total_targets, 1), total_targets


def train_step(
    model: SequentialRecommender,
    network: torch.nn.Module,
    global_batch: Batch,
    loss_fn: NextItemLoss,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    device: torch.device,
    ranks: Ranks,
) -> tuple[float, int, int]:
    """One optimizer step on this process's rows of ``global_batch``: (its mean loss per target, its number
    of targets, the number over all processes). The step ``benchmarks/train_speed.py`` times.

    ``network`` is ``model`` or its DistributedDataParallel wrapper; each process trains its rows of every
    global batch, and its loss is scaled so that the averaged gradient is exactly that of one process's
    mean loss over the whole global batch. A model that ``uses_timestamps`` gets the inputs' timestamps.
    """
    batch = shard_rows(global_batch, ranks)
    if len(batch.inputs) == 0:  # a last batch smaller than the world: take part in the all-reduce with no weight
        batch = Batch(*(None if part is None else torch.zeros_like(part[:1]) for part in global_batch))
    inputs, targets = batch.inputs.to(device), batch.targets.to(device)
    count = int((targets != 0).sum())
    global_count = all_sum(count, device)
    if not global_count:  # every pair's target shares its input's timestamp (``WindowIndex``): nothing to learn
        return 0.0, 0, 0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    with autocast:
        hidden = network(inputs, batch.timestamps.to(device)) if model.uses_timestamps else network(inputs)
        loss = loss_fn(model, hidden, targets) if count else hidden.sum() * 0.0
    optimizer.zero_grad(set_to_none=True)
    (loss * (count * ranks.world_size / global_count)).backward()
    if config.grad_clip and config.sparse_item_updates:
        clip_grad_norm(list(model.parameters()), config.grad_clip)
    elif config.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return float(loss.detach()), count, int(global_count)


def _data_parallel(model: SequentialRecommender, device: torch.device) -> DistributedDataParallel:
    """DDP over the process group torchrun started; it broadcasts rank 0's weights, so all ranks start equal."""
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def fit(
    model: SequentialRecommender,
    data: SplitData,
    config: TrainConfig,
    on_epoch: Callable[[EpochReport], None] | None = None,
    init_state_dict: dict[str, Tensor] | None = None,
    checkpoint_dir: str | Path | None = None,
) -> FitResult:
    """Train, validate each epoch, stop early on valid ndcg_10, restore the best epoch, then test.

    Windows are ``model.config.max_len`` events long; with ``checkpoint_dir`` every epoch is checkpointed
    there and a run that finds a checkpoint resumes from it."""
    ranks = current_ranks()
    if config.sparse_item_updates and ranks.distributed:
        raise ValueError("train.sparse_item_updates works in one process only (DDP reduces dense gradients)")
    device = resolve_device(config.device, ranks)
    seed_everything(config.seed)
    if init_state_dict is not None:
        model.load_state_dict(init_state_dict)
    model.to(device)
    optimizer = build_optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    # Batches are cut from it as they are needed, with the inputs' times for a model that reads them.
    windows = WindowIndex.of(data, model.config.max_len, timestamps=model.uses_timestamps)
    if len(windows) == 0:
        raise ValueError(
            f"nothing to train on: the split has {int((data.split == TRAIN).sum())} training events and no user "
            "with two of them; check the split's cut-offs (metadata num_train_events) and the timestamp unit"
        )
    loss_fn = NextItemLoss(config, data.train_item_counts(), generator)
    progress, best_state = Progress(), None
    best_states: UserStates | None = None  # the best epoch's validation states (this process's epochs only)
    path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    saved = load_checkpoint(path) if path else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        generator.set_state(saved["sampler_rng"])
        if "cuda_rng" in saved and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        progress, best_state = Progress(**saved["progress"]), saved["best_state"]
        if progress.patience_mark is None and progress.best_epoch:  # a checkpoint from before the mark was kept
            progress.patience_mark = progress.best_metric
    # Compile (or load from Numba's cache) every kernel training uses before the meters start.
    compile_seconds = warm_up(model, device)
    network = _data_parallel(model, device) if ranks.distributed else model
    memory = PeakMemory(device)
    seen = {"exclude_seen": config.exclude_seen}  # every evaluation of the run ranks by the same rule

    for epoch in range(progress.next_epoch, config.epochs + 1):
        if progress.stopped_early:
            break
        batches = windows.batches(config.batch_size, np.random.default_rng([config.seed, epoch]))
        planned = windows.num_targets
        if config.max_steps_per_epoch is not None:
            batches = itertools.islice(batches, config.max_steps_per_epoch)
            planned = min(planned, round(planned * config.max_steps_per_epoch * config.batch_size / len(windows)))
        began = time.perf_counter()
        progress_log = ProgressLog(f"epoch {epoch}/{config.epochs}", planned, "events")
        train_loss, events = _train_epoch(
            model, network, batches, loss_fn, optimizer, config, device, ranks, progress_log
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - began
        epoch_states = UserStates(model, data.num_users) if model.supports_streaming else None
        valid = evaluate(
            model, data, "valid", device=device, max_targets=config.eval_max_targets, states=epoch_states, **seen
        )
        report = EpochReport(epoch, train_loss, dict(valid.overall), seconds, events / max(seconds, 1e-9))
        progress.reports.append(dataclasses.asdict(report))
        progress.train_seconds += seconds
        progress.eval_seconds += valid.seconds
        progress.train_events += events
        metric = valid.overall["ndcg_10"]
        if best_state is None or metric > progress.best_metric:
            progress.best_metric, progress.best_epoch, progress.best_valid = metric, epoch, valid.as_dict()
            best_state = {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}
            best_states = epoch_states  # the test continues each history from here, with these weights
        count_patience(progress, metric, config.min_improvement)
        progress.stopped_early = 0 < config.patience <= progress.epochs_without_improvement and epoch < config.epochs
        progress.next_epoch = epoch + 1
        if path is not None and ranks.is_main:
            save_checkpoint(path, _checkpoint_payload(model, optimizer, generator, progress, best_state))
        if on_epoch is not None and ranks.is_main:
            on_epoch(report)

    if best_state is not None:
        model.load_state_dict(best_state)
    valid = EvalResult.from_dict(progress.best_valid) if progress.best_valid else None
    if valid is None:  # no epoch trained: evaluate the model as given
        valid = evaluate(model, data, "valid", device=device, max_targets=config.eval_max_targets, **seen)
    test = evaluate(model, data, "test", device=device, max_targets=config.test_max_targets, states=best_states, **seen)
    epochs_run = max(len(progress.reports), 1)
    cost = CostReport(
        train_seconds_per_epoch=progress.train_seconds / epochs_run,
        train_seconds_total=progress.train_seconds,
        eval_seconds=progress.eval_seconds + test.seconds,
        peak_memory_mb=memory.peak_mb(),
        train_events_per_second=progress.train_events / max(progress.train_seconds, 1e-9),
        num_parameters=model.num_parameters(),
        compile_seconds=compile_seconds,
        kernels_compiled=kernels_compiled_here(),
    )
    return FitResult(
        best_epoch=progress.best_epoch,
        epochs=[EpochReport(**report) for report in progress.reports],
        valid=valid,
        test=test,
        cost=cost,
        stopped_early=progress.stopped_early,
    )


@dataclass(frozen=True)
class TrainedRun:
    """What a training run leaves: the model with its best epoch's weights (on the training device) and
    how it got there."""

    model: SequentialRecommender
    result: FitResult


def train_run(
    model_name: str,
    run_config: RunConfig,
    data: SplitData,
    *,
    on_epoch: Callable[[EpochReport], None] | None = None,
    init_state_dict: dict[str, Tensor] | None = None,
    checkpoint_dir: str | Path | None = None,
) -> TrainedRun:
    """Train ``model_name`` as ``run_config`` (``run_config_class(model_name)``: ``model`` and ``train``)
    says on ``data``: the one entry point, so that every caller gets the same weights from the same config.

    ``init_state_dict`` replaces the initial weights (warm start, fine-tuning; same shapes); with
    ``checkpoint_dir`` every epoch is checkpointed there and a run that finds a checkpoint resumes it."""
    model = build_run_model(model_name, run_config, data.num_items)
    result = fit(model, data, run_config.train, on_epoch, init_state_dict, checkpoint_dir)
    return TrainedRun(model, result)


def build_run_model(model_name: str, run_config: RunConfig, num_items: int) -> SequentialRecommender:
    """The model of ``run_config``'s ``model`` section over ``num_items`` items, initialised from
    ``train.seed``, so that one run config always starts from the same weights."""
    expected = run_config_class(model_name)
    if not isinstance(run_config, expected):
        raise TypeError(f"{model_name} trains from a {expected.__name__}, got a {type(run_config).__name__}")
    seed_everything(run_config.train.seed)
    return build_model(model_name, num_items, **run_config.model.model_dump())


def prepare_process(device: str, fill_kernel_cache: bool) -> Ranks:
    """Set up a training process: one thread budget for torch and Numba, the torchrun process group (if
    launched by torchrun) and, with ``fill_kernel_cache``, Numba's on-disk cache filled once per machine by
    local rank 0 while the others wait, so that no process compiles inside its meters. A launcher that
    filled the cache before starting the process (the Dagster assets) passes False."""
    apply_thread_budget()
    ranks = init_from_env(device)
    if fill_kernel_cache:
        if ranks.local_rank == 0:
            warm_kernel_cache()
        barrier()  # the other processes of this machine load the cache instead of compiling it again
    return ranks
