"""The cost meter measures only its own stretch of work, and the compile warm-up changes nothing but the clock."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from recmodels import build_model
from recmodels.data.split_data import SplitData, write_split_export
from recmodels.evaluation import cost
from recmodels.evaluation.cost import CostReport, PeakMemory
from recmodels.ops.dispatch import load_backend
from recmodels.training.loop import TrainConfig, fit
from recmodels.training.warmup import kernel_sources_fingerprint, warm_kernel_cache, warm_up

CPU = torch.device("cpu")
MB = 2**20
TRAINING_KERNELS = ("scan_forward", "conv_silu_forward", "scan_backward", "conv_silu_backward")
needs_vmhwm = pytest.mark.skipif(
    PeakMemory(CPU).method != "vmhwm", reason="/proc/self/clear_refs is not writable here (no VmHWM reset)"
)
needs_numba = pytest.mark.skipif(load_backend("cpu_fused") is None, reason="numba is not importable here")


def resident_array(megabytes: int) -> np.ndarray:
    """An array whose every page has been written, so all of it is resident."""
    return np.ones(megabytes * MB // 8)


@needs_vmhwm
def test_peak_counts_memory_used_inside_the_stretch_not_memory_freed_before_it():
    before = resident_array(400)
    del before  # large arrays are mmap'ed: freeing them returns the pages, but VmHWM remembers them
    meter = PeakMemory(CPU)
    during = resident_array(200)
    rise = meter.peak_mb()
    del during
    assert 190 <= rise < 300, rise


@needs_vmhwm
def test_reset_starts_a_new_stretch_in_the_same_process():
    meter = PeakMemory(CPU)
    first = resident_array(300)
    first_rise = meter.peak_mb()
    del first
    meter.reset()
    second = resident_array(100)
    second_rise = meter.peak_mb()
    del second
    assert 290 <= first_rise < 400, first_rise
    assert 90 <= second_rise < 200, second_rise


def test_without_clear_refs_the_meter_falls_back_to_the_rise_of_ru_maxrss(tmp_path, monkeypatch):
    monkeypatch.setattr(cost, "CLEAR_REFS", tmp_path / "no such folder" / "clear_refs")
    meter = PeakMemory(CPU)
    assert meter.method == "ru_maxrss_rise"
    assert meter.peak_mb() >= 0.0


def test_cost_report_has_compile_seconds_defaulting_to_zero():
    report = CostReport(1.0, 2.0, 0.5, 100.0, 1000.0, 10)
    assert report.compile_seconds == 0.0
    assert report.as_metrics()["compile_seconds"] == 0.0


def small_recmamba(num_items: int = 12) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("recmamba", num_items, d_model=16, max_len=16, dropout=0.3)


def test_warm_up_leaves_weights_gradients_mode_and_rng_stream_unchanged():
    model = small_recmamba()
    model(torch.randint(1, 13, (3, 16))).square().mean().backward()  # gradients the caller holds
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.eval()
    torch.manual_seed(7)
    expected = torch.rand(5)
    torch.manual_seed(7)
    assert warm_up(model, CPU) > 0.0
    assert torch.equal(torch.rand(5), expected)
    assert not model.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter.grad, grads[name]), name


def cycle_export(tmp_path, num_users=8, num_items=12, length=40) -> SplitData:
    histories = [[(user + t) % num_items + 1 for t in range(length)] for user in range(num_users)]
    splits = [[0] * (length - 6) + [1] * 3 + [2] * 3 for _ in range(num_users)]
    return SplitData.load(write_split_export(tmp_path / "export", histories, splits, num_items=num_items))


def test_seeded_training_after_a_warm_up_equals_training_without_one(tmp_path):
    data = cycle_export(tmp_path)
    config = TrainConfig(epochs=2, batch_size=4, lr=5e-3, patience=0, seed=3)
    results = []
    for warm in (False, True):
        model = small_recmamba(data.num_items)
        if warm:
            warm_up(model, CPU)
        results.append((fit(model, data, config), model.state_dict()))
    (plain, plain_weights), (warmed, warmed_weights) = results
    assert [e.train_loss for e in warmed.epochs] == [e.train_loss for e in plain.epochs]
    assert warmed.test.overall == plain.test.overall
    for name, value in plain_weights.items():
        assert torch.equal(warmed_weights[name], value), name


@needs_numba
def test_warm_up_compiles_every_kernel_recmamba_training_runs():
    from recmodels.ops import cpu_kernels as kernels

    warm_up(small_recmamba(), CPU)
    assert all(getattr(kernels, name).signatures for name in TRAINING_KERNELS)


def test_a_stamped_kernel_cache_is_not_warmed_again_until_its_sources_or_folder_change(tmp_path):
    stamp = tmp_path / "stamp"
    env = dict(os.environ)
    first = warm_kernel_cache(env, stamp)
    assert first is not None and first > 0 and stamp.read_text() == kernel_sources_fingerprint(env)
    assert warm_kernel_cache(env, stamp) == 0.0  # filled for these sources: no process started
    stamp.write_text("a fill for older kernel sources")
    assert warm_kernel_cache(env, stamp) > 0 and stamp.read_text() == kernel_sources_fingerprint(env)
    assert kernel_sources_fingerprint({**env, "NUMBA_CACHE_DIR": str(tmp_path)}) != stamp.read_text()
