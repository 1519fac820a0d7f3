"""Item tables at LFM-1b's catalogue: bfloat16 storage read as float32, the row-wise Adagrad with stochastic
rounding, popularity negatives past torch.multinomial's 2^24 categories, ranking from a bfloat16 table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from recmodels import build_model
from recmodels.data.split_data import SplitData, write_split_export
from recmodels.evaluation.topk import blockwise_ranks, blockwise_topk
from recmodels.ops import use_backend
from recmodels.training.config import TrainConfig
from recmodels.training.loop import build_optimizer, fit
from recmodels.training.losses import SampledSoftmax
from recmodels.training.sparse_optim import RowwiseAdagrad, stochastic_bfloat16

SPARSE_BF16 = {"loss": "sampled_softmax", "num_negatives": 8, "sparse_item_updates": True}


def test_popularity_negatives_are_drawn_past_two_to_the_24_items():
    num_items = 2**24 + 10
    counts = np.zeros(num_items + 1, np.int64)
    counts[-4:] = 10**9  # nearly all the mass on the last four ids, above multinomial's limit
    loss = SampledSoftmax("popularity", 4000, counts, torch.Generator().manual_seed(0))
    drawn = loss.negatives(torch.tensor([1]))
    assert drawn.shape == (4000,) and int(drawn.min()) >= 1 and int(drawn.max()) <= num_items
    top = drawn >= num_items - 3
    assert 0.99 < float(top.float().mean()) <= 1.0
    counted = np.bincount(drawn[top].numpy() - (num_items - 3), minlength=4) / int(top.sum())
    np.testing.assert_allclose(counted, 0.25, atol=0.04)


def test_stochastic_rounding_lands_on_a_neighbour_and_is_unbiased():
    value = 1.0 + 3 / 1024  # between the bfloat16 neighbours 1 and 1 + 2^-7, 3/8 of the way up
    rounded = stochastic_bfloat16(torch.full((200_000,), value), torch.Generator().manual_seed(0)).float()
    assert set(rounded.unique().tolist()) == {1.0, 1.0 + 2**-7}
    assert float(rounded.mean()) == pytest.approx(value, abs=2e-5)
    exact = torch.tensor([0.5, -3.0, 0.0])  # bfloat16 values stay as they are
    assert torch.equal(stochastic_bfloat16(exact, torch.Generator()).float(), exact)


def test_rowwise_adagrad_updates_touched_rows_by_their_mean_square():
    table = torch.nn.Embedding(6, 3, sparse=True)
    before = table.weight.detach().clone()
    optimizer = RowwiseAdagrad(table.weight, lr=0.1)
    table(torch.tensor([1, 4, 4])).pow(2).sum().backward()
    grad = table.weight.grad.coalesce().to_dense()
    optimizer.step()
    accumulator = grad.pow(2).mean(dim=1)
    expected = before - 0.1 * grad / (accumulator.sqrt() + 1e-8)[:, None]
    for row in (1, 4):
        torch.testing.assert_close(table.weight[row].detach(), expected[row])
    for row in (0, 2, 3, 5):
        assert torch.equal(table.weight[row].detach(), before[row])
    torch.testing.assert_close(optimizer.state[table.weight]["sum"], accumulator)


def test_a_resumed_bfloat16_table_rounds_as_an_uninterrupted_one(tmp_path):
    def bfloat16_table() -> torch.nn.Embedding:
        torch.manual_seed(0)
        return torch.nn.Embedding(50, 8, sparse=True, dtype=torch.bfloat16)

    def step(table: torch.nn.Embedding, optimizer: RowwiseAdagrad, rows: list[int]) -> None:
        optimizer.zero_grad()
        table(torch.tensor(rows)).float().pow(2).sum().backward()
        optimizer.step()

    straight = bfloat16_table()
    optimizer = RowwiseAdagrad(straight.weight, lr=1e-3, seed=7)
    for rows in ([1, 2, 3], [2, 3, 4]):
        step(straight, optimizer, rows)

    interrupted = bfloat16_table()
    first = RowwiseAdagrad(interrupted.weight, lr=1e-3, seed=7)
    step(interrupted, first, [1, 2, 3])
    torch.save(first.state_dict(), tmp_path / "optimizer.pt")
    resumed = RowwiseAdagrad(interrupted.weight, lr=1e-3, seed=0)  # another seed: only the checkpoint can agree
    resumed.load_state_dict(torch.load(tmp_path / "optimizer.pt", weights_only=True))
    step(interrupted, resumed, [2, 3, 4])
    assert torch.equal(interrupted.weight, straight.weight)


def cycle_export(tmp_path, num_items=30):
    histories = [[(user + t) % num_items + 1 for t in range(40)] for user in range(8)]
    splits = [[0] * 34 + [1] * 3 + [2] * 3 for _ in histories]
    return SplitData.load(write_split_export(tmp_path / "export", histories, splits, num_items=num_items))


@pytest.mark.parametrize("name", ["recmamba", "sasrec"])
def test_a_bfloat16_table_trains_with_the_rowwise_optimizer(tmp_path, name):
    data = cycle_export(tmp_path)
    torch.manual_seed(0)
    model = build_model(name, data.num_items, d_model=16, max_len=16, dropout=0.0, item_dtype="bfloat16")
    assert model.item_embedding.weight.dtype == torch.bfloat16
    assert model(torch.tensor([[0, 3, 4]])).dtype == torch.float32  # every layer computes in float32
    config = TrainConfig(epochs=6, batch_size=8, lr=2e-2, patience=0, item_optimizer="rowwise_adagrad", **SPARSE_BF16)
    with use_backend("chunked"):
        result = fit(model, data, config)
    assert model.item_embedding.weight.dtype == torch.bfloat16
    assert result.epochs[-1].train_loss < 0.7 * result.epochs[0].train_loss
    assert result.test.overall["hr_10"] > 0.5


def test_a_bfloat16_table_refuses_adam_and_rowwise_needs_sparse_updates():
    model = build_model("gru4rec", 20, item_dtype="bfloat16")
    with pytest.raises(ValueError, match="rowwise_adagrad"):
        build_optimizer(model, TrainConfig(**SPARSE_BF16))
    with pytest.raises(ValidationError, match=r"needs train\.sparse_item_updates"):
        TrainConfig(item_optimizer="rowwise_adagrad")
    with pytest.raises(ValueError, match="item_dtype must be one of"):
        build_model("gru4rec", 20, item_dtype="float16")


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_ranks_and_top_k_from_a_bfloat16_table_are_its_float32_values_ranks(backend):
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(5001, 16, generator=generator).bfloat16()
    hidden = torch.randn(40, 16, generator=generator)
    targets = torch.randint(1, 5001, (40,), generator=generator)
    as_float = table.float()
    for block in (0, 1024):  # one block, several
        ranks = blockwise_ranks(hidden, table, targets, block_items=block, backend=backend)
        torch.testing.assert_close(
            ranks, blockwise_ranks(hidden, as_float, targets, block_items=block, backend=backend)
        )
        values, items = blockwise_topk(hidden, table, 10, block_items=block, backend=backend)
        expected_values, expected_items = blockwise_topk(hidden, as_float, 10, block_items=block, backend=backend)
        assert torch.equal(items, expected_items) and torch.equal(values, expected_values)
