"""HSTU's layer against a hand computation and against the dense computation it replaced, and what its relative
bias makes of event times."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recmodels import build_model
from recmodels.models import hstu
from recmodels.models.base import positions_from_first_event
from recmodels.models.hstu import Layout, bucket_starts, tiles, time_buckets

NUM_ITEMS = 30
DAY_MS = 86_400_000


def small_hstu(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("hstu", NUM_ITEMS, **({"d_model": 16, "max_len": 40, "n_heads": 2} | overrides)).eval()
    with torch.no_grad():  # biases big enough to matter (they start near zero, as in the public code)
        for layer in model.layers:
            layer.relative_bias.position.normal_()
            layer.relative_bias.time.normal_()
    return model


@pytest.fixture(params=["kernels", "torch"])
def attention_path(request, monkeypatch) -> str:
    """Each dense comparison runs on the CPU kernels and on the torch operations (CUDA's path, and the CPU's
    without Numba); the torch path is the only one for events out of time order."""
    if request.param == "torch":
        monkeypatch.setattr(hstu, "TileBias", None)
    elif hstu.TileBias is None:
        pytest.skip("numba is not importable here")
    return request.param


def random_history(batch: int, length: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Items and increasing ms timestamps, gaps from a second to a few days."""
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, NUM_ITEMS + 1, (batch, length), generator=generator)
    gaps = (10 ** torch.empty(batch, length).uniform_(3, 8.5, generator=generator)).long()
    return items, 1_700_000_000_000 + gaps.cumsum(dim=1)


def test_a_later_item_or_time_never_changes_earlier_outputs():
    model = small_hstu()
    items, times = random_history(2, 20)
    later_item, later_time = items.clone(), times.clone()
    later_item[:, 12] = later_item[:, 12] % NUM_ITEMS + 1
    later_time[:, 12:] += DAY_MS
    with torch.no_grad():
        before = model(items, times)
        for changed_items, changed_times in ((later_item, times), (items, later_time)):
            after = model(changed_items, changed_times)
            torch.testing.assert_close(after[:, :12], before[:, :12], rtol=0, atol=1e-6)
            assert not torch.allclose(after[:, 12:], before[:, 12:])


def test_left_padding_does_not_change_outputs_whatever_the_padded_times():
    model = small_hstu()
    items, times = random_history(3, 15)
    items[0, :6] = 0  # a shorter history in the same batch
    mask = items != 0
    with torch.no_grad():
        plain = model(items, times)
        for extra in (1, 9):
            padded_items = torch.cat([torch.zeros(3, extra, dtype=torch.long), items], dim=1)
            padded_times = torch.cat([torch.randint(0, 10**12, (3, extra)), times], dim=1)  # never read
            torch.testing.assert_close(model(padded_items, padded_times)[:, extra:][mask], plain[mask])
        alone = model(items[0:1, 6:], times[0:1, 6:])  # the short history without any padding
    torch.testing.assert_close(plain[0, 6:], alone[0])


def test_masked_pairs_give_finite_gradients_to_every_weight():
    model = small_hstu().train()
    items, times = random_history(3, 15)
    items[0, :6] = 0
    (model(items, times) * torch.randn(3, 15, 16)).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_the_relative_bias_sees_time_gaps_and_only_gaps():
    model = small_hstu()
    items = torch.tensor([[4, 9, 2, 7]])
    seconds_apart = torch.tensor([[0, 1_000, 2_000, 3_000]]) + 1_700_000_000_000
    days_apart = torch.tensor([[0, DAY_MS, 2 * DAY_MS, 3 * DAY_MS]]) + 1_700_000_000_000
    with torch.no_grad():
        quick, slow = model(items, seconds_apart), model(items, days_apart)
        shifted = model(items, days_apart + 365 * DAY_MS)
    torch.testing.assert_close(quick[:, 0], slow[:, 0])  # the first event sees only itself: no gap
    assert not torch.allclose(quick[:, 1:], slow[:, 1:], atol=1e-4)  # same items, other gaps: other outputs
    torch.testing.assert_close(shifted, slow)  # a year later with the same gaps: the same outputs


def test_time_buckets_are_log_spaced_seconds_capped_at_the_last():
    gaps_ms = torch.tensor([0, 999, 1_000, 5_000, 3_605_000, 10**15])
    buckets = time_buckets(gaps_ms, bucket_starts(60))
    seconds = [max(gap / 1000, 1.0) for gap in gaps_ms.tolist()]
    assert buckets.tolist() == [min(math.floor(math.log(s) / 0.301), 60) for s in seconds]
    assert buckets.tolist() == [0, 0, 0, 5, 27, 60]


def test_bucket_starts_past_the_int64_range_stay_in_order():
    starts = bucket_starts(128)
    assert bool((starts[1:] >= starts[:-1]).all())  # buckets 123.. start where no gap reaches
    assert time_buckets(torch.tensor([10**18]), starts).item() == math.floor(math.log(10**15) / 0.301)


def test_the_last_position_shortcut_and_truncation_keep_the_timestamps():
    model = small_hstu(max_len=8)
    items, times = random_history(3, 20)
    items[1, :15] = 0
    with torch.no_grad():
        whole = model(items, times)
        torch.testing.assert_close(model.forward_last(items, times), whole[:, -1])
        torch.testing.assert_close(whole[:, -1], model(items[:, -8:], times[:, -8:])[:, -1])


def test_unit_vectors_and_temperature_make_every_logit_a_scaled_cosine():
    model = small_hstu(l2_normalize=True, temperature=0.05)
    items, times = random_history(2, 6)
    with torch.no_grad():
        hidden = model(items, times)
        vectors = model.item_vectors()
        scores = model.scores(hidden)
    torch.testing.assert_close(hidden.norm(dim=-1), torch.full((2, 6), 20.0))
    torch.testing.assert_close(vectors[1:].norm(dim=-1), torch.ones(NUM_ITEMS))
    assert torch.equal(vectors[0], torch.zeros(16))  # padding stays the zero vector
    torch.testing.assert_close(model.item_vectors(torch.tensor([3, 5])), vectors[[3, 5]])
    cosine = F.cosine_similarity(hidden[0, -1], model.item_embedding.weight[7], dim=0)
    torch.testing.assert_close(scores[0, -1, 7], cosine / 0.05)


# The hand computation: explicit loops over events, heads and keys, float64, from the module docstring's formula.


def layer_norm(vector: np.ndarray, eps: float, weight: np.ndarray | None = None, bias: np.ndarray | None = None):
    mean = sum(vector) / len(vector)
    variance = sum((value - mean) ** 2 for value in vector) / len(vector)
    normed = np.array([(value - mean) / math.sqrt(variance + eps) for value in vector])
    return normed if weight is None else normed * weight + bias


def silu(value: float) -> float:
    return value / (1.0 + math.exp(-value))


def hand_computed(model, items: list[int], times_ms: list[int]) -> np.ndarray:
    config = model.config
    d, heads = config.d_model, config.n_heads
    width = d // heads
    weights = {name: value.detach().double().numpy() for name, value in model.state_dict().items()}
    items_table, positions_table = weights["item_embedding.weight"], weights["position_embedding.weight"]
    x = [items_table[item] + positions_table[i] for i, item in enumerate(items)]
    for layer in range(config.n_layers):
        p = {name.split(".", 2)[2]: value for name, value in weights.items() if name.startswith(f"layers.{layer}.")}
        projected = [np.array([silu(z) for z in p["uvqk.weight"] @ layer_norm(x_i, 1e-6)]) for x_i in x]
        u, v, q, k = ([row[part * d : (part + 1) * d] for row in projected] for part in range(4))
        new_x = []
        for i in range(len(items)):
            attended = np.zeros(d)
            for h in range(heads):
                dims = slice(h * width, (h + 1) * width)
                for j in range(i + 1):
                    gap_seconds = max(abs(times_ms[i] - times_ms[j]) / 1000, 1.0)
                    bucket = min(math.floor(math.log(gap_seconds) / 0.301), config.num_time_buckets)
                    score = float(q[i][dims] @ k[j][dims])
                    score += p["relative_bias.position"][i - j] + p["relative_bias.time"][bucket]
                    attended[dims] += silu(score) / config.max_len * v[j][dims]
            gated = layer_norm(attended, 1e-6) * u[i]
            new_x.append(x[i] + p["out.weight"] @ gated + p["out.bias"])
        x = new_x
    return np.array([layer_norm(x_i, 1e-5, weights["output_norm.weight"], weights["output_norm.bias"]) for x_i in x])


def test_two_layers_over_three_events_equal_a_hand_computation(attention_path: str):
    model = small_hstu(d_model=4, n_layers=2, n_heads=2, max_len=5, dropout=0.0).double()
    with torch.no_grad():
        model.output_norm.weight.normal_()
        model.output_norm.bias.normal_()
        for layer in model.layers:
            layer.out.bias.normal_()
    items, times = [3, 1, 5], [1_700_000_000_000, 1_700_000_005_000, 1_700_003_605_000]  # gaps 5 s and 1 h
    with torch.no_grad():
        got = model(torch.tensor([items]), torch.tensor([times]))[0].numpy()
    np.testing.assert_allclose(got, hand_computed(model, items, times), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("padding", [0, 2])
def test_the_hand_computation_holds_behind_left_padding(attention_path: str, padding: int):
    model = small_hstu(d_model=4, n_layers=2, n_heads=2, max_len=6, dropout=0.0).double()
    items, times = [3, 1, 5], [1_700_000_000_000, 1_700_000_005_000, 1_700_003_605_000]
    with torch.no_grad():
        got = model(torch.tensor([[0] * padding + items]), torch.tensor([[0] * padding + times]))[0, padding:]
    np.testing.assert_allclose(got.numpy(), hand_computed(model, items, times), rtol=1e-10, atol=1e-12)


# The dense computation the tiled attention replaced, kept as the reference: a (B, L, L) row of the bias tables
# per pair, one gather per layer, (B, H, L, L) scores.


def dense_time_buckets(timestamps: torch.Tensor, num_buckets: int) -> torch.Tensor:
    bucket = torch.arange(1, num_buckets + 1, dtype=torch.float64)
    starts = (1000 * torch.exp(0.301 * bucket)).ceil().long()
    gap_ms = timestamps[:, :, None] - timestamps[:, None, :]
    return torch.bucketize(gap_ms, starts, right=True, out_int32=True)


def dense_hstu(model, items: torch.Tensor, timestamps: torch.Tensor | None) -> torch.Tensor:
    config = model.config
    items = items[:, -config.max_len :]
    timestamps = None if timestamps is None else timestamps[:, -config.max_len :]
    mask = items != 0
    x = (model.item_embedding(items) + model.position_embedding(positions_from_first_event(mask))) * mask[..., None]
    index = torch.arange(items.shape[1])
    offset = index[:, None] - index[None, :]
    row = offset.clamp(0, config.max_len - 1)
    if timestamps is not None:
        row = row * (config.num_time_buckets + 1) + dense_time_buckets(timestamps, config.num_time_buckets)
    masked_row = config.max_len * (config.num_time_buckets + 1 if timestamps is not None else 1)
    bias_row = torch.where((offset >= 0) & mask[:, None, :], row, masked_row)  # (B, L, L)
    for layer in model.layers:
        position, time = layer.relative_bias.position, layer.relative_bias.time
        values = (position[:, None] + time[None, :]).flatten() if timestamps is not None else position
        table = torch.cat([values, values.new_full((1,), hstu.MASKED)])
        u, v, q, k = F.silu(layer.uvqk(F.layer_norm(x, (config.d_model,), eps=1e-6))).chunk(4, dim=-1)
        q, k, v = (part.unflatten(-1, (config.n_heads, -1)).transpose(1, 2) for part in (q, k, v))
        scores = q @ k.transpose(-1, -2) + table[bias_row].unsqueeze(1)  # (B, H, L, L)
        attended = (F.silu(scores) @ (v / config.max_len)).transpose(1, 2).flatten(2)
        gated = F.layer_norm(attended, (config.d_model,), eps=1e-6) * u
        x = x + layer.out(gated)
    return model.read_out(x, model.output_norm)


def padded_history(times_in_order: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows of 26 events for a max_len of 23: 9 padding, none, all padding; a row out of order if asked."""
    items, times = random_history(3, 26, seed=4)
    items[0, :9] = 0
    items[2] = 0
    times[0, :9] = torch.randint(0, 10**13, (9,))  # padding's times are never read
    if not times_in_order:
        times[1] = times[1, torch.randperm(26, generator=torch.Generator().manual_seed(5))]
    return items, times


def gradients(model, output: torch.Tensor, weights: torch.Tensor) -> list[torch.Tensor | None]:
    return list(torch.autograd.grad((output * weights).sum(), list(model.parameters()), allow_unused=True))


@pytest.mark.parametrize("times", ["in time order", "out of time order", "none"])
def test_tiles_of_queries_and_keys_compute_the_dense_attention_and_its_gradients(
    monkeypatch, attention_path: str, times: str
):
    monkeypatch.setattr(hstu, "QUERY_BLOCK", 4)  # blocks of 4 queries ...
    monkeypatch.setattr(hstu, "TILE_BYTES", 3 * 2 * 4 * 8 * 8)  # ... by 8 keys: (B, H, Q) float64 scores per key
    model = small_hstu(max_len=23, dropout=0.0).double()  # 23 positions: the last block is partial
    items, timestamps = padded_history(times_in_order=times != "out of time order")
    timestamps = None if times == "none" else timestamps
    weights = torch.randn(3, 23, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    dense, tiled = dense_hstu(model, items, timestamps), model(items, timestamps)
    torch.testing.assert_close(tiled, dense, rtol=1e-10, atol=1e-10)
    for got, expected in zip(gradients(model, tiled, weights), gradients(model, dense, weights), strict=True):
        assert (got is None) == (expected is None)  # no time bias read without timestamps
        if got is not None:
            torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)
    last, dense_last = model.forward_last(items, timestamps), dense_hstu(model, items, timestamps)[:, -1]
    torch.testing.assert_close(last, dense_last, rtol=1e-10, atol=1e-10)
    for got, expected in zip(
        gradients(model, last, weights[:, -1]), gradients(model, dense_last, weights[:, -1]), strict=True
    ):
        if got is not None:
            torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


def test_float32_tiles_stay_within_float_tolerance_of_the_dense_attention(monkeypatch, attention_path: str):
    monkeypatch.setattr(hstu, "QUERY_BLOCK", 4)
    monkeypatch.setattr(hstu, "TILE_BYTES", 3 * 2 * 4 * 4 * 8)  # tiles of 4 queries by 8 keys, in float32
    model = small_hstu(max_len=23, dropout=0.0)
    items, timestamps = padded_history(times_in_order=True)
    weights = torch.randn(3, 23, 16, generator=torch.Generator().manual_seed(6))
    dense, tiled = dense_hstu(model, items, timestamps), model(items, timestamps)
    torch.testing.assert_close(tiled, dense, rtol=1e-5, atol=1e-5)
    for got, expected in zip(gradients(model, tiled, weights), gradients(model, dense, weights), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_tiles_cover_each_earlier_or_same_pair_once_within_the_byte_budget(monkeypatch):
    monkeypatch.setattr(hstu, "QUERY_BLOCK", 8)
    monkeypatch.setattr(hstu, "TILE_BYTES", 2 * 2 * 8 * 4 * 24)  # 24 keys of a block of 8 queries
    layout = Layout.of(torch.ones(2, 100, dtype=torch.bool), None, hstu.HSTUConfig(max_len=100))
    covered = torch.zeros(100, 100, dtype=torch.int64)
    for rows, key_chunks in tiles(layout, heads=2, itemsize=4):
        assert rows.stop - rows.start <= 8
        for keys in key_chunks:
            assert 2 * 2 * (rows.stop - rows.start) * (keys.stop - keys.start) * 4 <= hstu.TILE_BYTES
            assert keys.stop <= rows.stop  # no key is later than the block's last query
            covered[rows, keys] += 1
    earlier_or_same = torch.ones(100, 100, dtype=torch.bool).tril()
    assert bool((covered[earlier_or_same] == 1).all())
    assert bool((covered[~earlier_or_same] <= 1).all())  # a later key is read only within its query's block
    last = [(rows, keys) for rows, keys in tiles(layout.last_query(), heads=2, itemsize=4)]
    assert last == [(slice(99, 100), [slice(0, 100)])]  # ranking: one query, every key in one tile


def test_time_order_is_read_off_the_real_events_only():
    mask = torch.tensor([[False, False, True, True], [True, True, True, True]])
    in_order = torch.tensor([[9_000, 1, 5_000, 6_000], [1_000, 2_000, 2_000, 7_000]])
    assert Layout.of(mask, in_order, hstu.HSTUConfig()).ordered  # padding's times are never read
    back_in_time = in_order.clone()
    back_in_time[1, 3] = 1_500
    assert not Layout.of(mask, back_in_time, hstu.HSTUConfig()).ordered
