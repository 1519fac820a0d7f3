"""The options that bring the published recipes' parametrisation: candidates drawn per position, the
reference's init and input scaling, the cosine head, Adam's beta2 and ranking without seen items."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recmodels import build_model
from recmodels.data.split_data import SplitData, write_split_export
from recmodels.evaluation.evaluate import evaluate
from recmodels.ops import use_backend
from recmodels.training import losses
from recmodels.training.config import TrainConfig, run_config_class
from recmodels.training.loop import build_optimizer, fit
from recmodels.training.losses import SampledSoftmax, per_position_softmax_loss

NUM_ITEMS = 40
SMALL = {"d_model": 16, "max_len": 16, "dropout": 0.0}


def reference_sampled_softmax(hidden, table, targets, negatives, temperature):
    """generative-recommenders' SampledSoftmaxLoss with local negatives, written out: unit query and item
    vectors, cosine / temperature, an accidental hit's logit set to -5e4, -log softmax of the positive."""
    query = F.normalize(hidden, dim=-1, eps=1e-6)
    positive = (query * F.normalize(table[targets], dim=-1, eps=1e-6)).sum(-1, keepdim=True) / temperature
    sampled = F.normalize(table[negatives], dim=-1, eps=1e-6)  # (n, K, D)
    negative = torch.einsum("nd,nkd->nk", query, sampled) / temperature
    negative = torch.where(negatives == targets[:, None], torch.tensor(-5e4), negative)
    return -F.log_softmax(torch.cat([positive, negative], dim=1), dim=1)[:, 0].mean()


@pytest.mark.parametrize("whole_catalogue", [True, False])
def test_per_position_candidates_give_the_reference_loss_and_gradients(monkeypatch, whole_catalogue):
    monkeypatch.setattr(losses, "DENSE_SCORES_PER_NEGATIVE", 100 if whole_catalogue else 1)
    torch.manual_seed(0)
    model = build_model("sasrec", NUM_ITEMS, **SMALL, l2_normalize=True, temperature=0.05)
    loss = SampledSoftmax("uniform", 9, np.zeros(NUM_ITEMS + 1), torch.Generator().manual_seed(1), per_position=True)
    targets = torch.tensor([3, 7, 7, 20, 1, 40])
    negatives = loss.negatives(targets)
    negatives[1, 0] = 7  # an accidental hit, on purpose
    raw = torch.randn(len(targets), 16, requires_grad=True)

    ours = per_position_softmax_loss(model.item_vectors, model.read_out(raw, model.output_norm), targets, negatives,
                                     loss.log_q)  # fmt: skip
    ours.backward()
    our_grads = raw.grad.clone(), model.item_embedding.weight.grad.clone()
    raw.grad = None
    table = model.item_embedding.weight.detach().clone().requires_grad_(True)
    reference = reference_sampled_softmax(raw, table, targets, negatives, 0.05)
    reference.backward()

    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    torch.testing.assert_close(our_grads[0], raw.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(our_grads[1], table.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_each_position_draws_its_own_candidates_from_the_proposal(sampler):
    counts = np.arange(NUM_ITEMS + 1) ** 2
    loss = SampledSoftmax(sampler, 10_000, counts, torch.Generator().manual_seed(0), per_position=True)
    negatives = loss.negatives(torch.tensor([1, 2, 3, 4]))
    assert negatives.shape == (4, 10_000)
    assert not torch.equal(negatives[0], negatives[1])
    assert int(negatives.min()) >= 1 and int(negatives.max()) <= NUM_ITEMS  # never padding
    drawn = np.bincount(negatives.flatten().numpy(), minlength=NUM_ITEMS + 1) / negatives.numel()
    np.testing.assert_allclose(drawn, loss.proposal.numpy(), atol=0.005)


def test_in_batch_candidates_stay_shared_whatever_the_option():
    loss = SampledSoftmax("in_batch", 5, np.ones(NUM_ITEMS + 1), torch.Generator(), per_position=True)
    assert not loss.per_position
    assert loss.negatives(torch.tensor([4, 2, 4])).tolist() == [2, 4]


@pytest.mark.parametrize("name", ["sasrec", "linrec", "hstu"])
def test_reference_init_scales_the_inputs_and_starts_small_item_vectors(name):
    torch.manual_seed(0)
    default = build_model(name, 2000, **SMALL)
    model = build_model(name, 2000, **SMALL, reference_init=True)
    table = model.item_embedding.weight.detach()
    assert torch.equal(table[0], torch.zeros(16))
    assert float(table[1:].std()) == pytest.approx(0.02 * 0.88, rel=0.05)  # a normal cut at two std
    assert float(table.abs().max()) <= 0.04
    assert model.input_scale == pytest.approx(4.0) and default.input_scale == 1.0
    model.eval()
    items = torch.tensor([[0, 0, 5, 9]])
    embedded, _ = model.embed(items) if name != "hstu" else model.embed(items, None)
    expected = table[[5, 9]] * 4.0 + model.position_embedding.weight[:2].detach()
    torch.testing.assert_close(embedded[0, 2:], expected)


def test_reference_init_makes_the_transformer_matrices_xavier_normal():
    torch.manual_seed(0)
    model = build_model("sasrec", NUM_ITEMS, d_model=64, max_len=16, reference_init=True)
    for block in model.blocks:
        weight = block.attention.qkv.weight.detach()  # (3 d, d)
        assert float(weight.std()) == pytest.approx(math.sqrt(2 / (64 + 192)), rel=0.05)
        assert torch.equal(block.attention_norm.weight.detach(), torch.ones(64))  # norms keep their init


def test_sasrec_cosine_head_makes_every_logit_a_scaled_cosine():
    torch.manual_seed(0)
    model = build_model("sasrec", NUM_ITEMS, **SMALL, l2_normalize=True, temperature=0.05).eval()
    items = torch.randint(1, NUM_ITEMS + 1, (2, 6))
    with torch.no_grad():
        hidden = model(items)
        scores = model.scores(hidden)
        last = model.forward_last(items)
    torch.testing.assert_close(hidden.norm(dim=-1), torch.full((2, 6), 20.0))
    torch.testing.assert_close(last, hidden[:, -1])
    cosine = F.cosine_similarity(hidden[1, 3], model.item_embedding.weight[7].detach(), dim=0)
    torch.testing.assert_close(scores[1, 3, 7], cosine / 0.05)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        build_model("sasrec", NUM_ITEMS, temperature=0.0)


@pytest.mark.parametrize("sparse", [False, True])
def test_adam_beta2_reaches_every_optimizer(sparse):
    model = build_model("sasrec", NUM_ITEMS, **SMALL)
    config = TrainConfig(adam_beta2=0.98, loss="sampled_softmax", sparse_item_updates=sparse)
    optimizer = build_optimizer(model, config)
    optimizers = [optimizer.dense, optimizer.item_rows] if sparse else [optimizer]
    assert all(group["betas"] == (0.9, 0.98) for opt in optimizers for group in opt.param_groups)


def repeat_export(tmp_path):
    """Users who walk a loop of 5 of the 12 items again and again: every target's loop-mates are seen items."""
    histories, splits = [], []
    for user in range(8):
        histories.append([(user + t) % 5 + 1 for t in range(30)])
        splits.append([0] * 24 + [1] * 3 + [2] * 3)
    return SplitData.load(write_split_export(tmp_path / "export", histories, splits, num_items=12))


def test_exclude_seen_ranks_every_evaluation_of_a_run_without_seen_items(tmp_path):
    data = repeat_export(tmp_path)
    torch.manual_seed(0)
    model = build_model("gru4rec", data.num_items, **SMALL)
    with use_backend("chunked"):
        result = fit(model, data, TrainConfig(epochs=2, batch_size=8, patience=0, exclude_seen=True))
    without_seen = evaluate(model, data, "test", exclude_seen=True)
    with_seen = evaluate(model, data, "test")
    np.testing.assert_array_equal(result.test.ranks.rank, without_seen.ranks.rank)
    assert (without_seen.ranks.rank <= with_seen.ranks.rank).all()  # the target itself is still ranked
    assert (without_seen.ranks.rank < with_seen.ranks.rank).any()


def test_the_options_are_run_config_fields():
    sections = {
        "model": {"reference_init": True, "l2_normalize": True, "temperature": 0.05},
        "train": {"negatives_per_position": True, "adam_beta2": 0.98, "exclude_seen": True, "grad_clip": None},
    }
    config = run_config_class("sasrec").model_validate(sections)
    assert config.model.reference_init and config.train.negatives_per_position
    with pytest.raises(ValueError):
        run_config_class("sasrec").model_validate({"train": {"adam_beta2": 1.0}})
