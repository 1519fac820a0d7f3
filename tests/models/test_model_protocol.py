"""Contract 2 for every model: shapes, causality, padding invariance, streaming, and mamba-ssm naming."""

from __future__ import annotations

import pytest
import torch

from recmodels import MODELS, build_model
from recmodels.models.mamba_mixer import MambaMixer
from recmodels.ops import use_backend

ALL = sorted(MODELS)
STREAMING = ["gru4rec", "lrurec", "mamba4rec", "recmamba"]
SMALL = {"d_model": 32, "max_len": 40}


@pytest.fixture(autouse=True)
def chunked_scan():
    """Hold the models to the plain-PyTorch scan, whatever other backends exist here."""
    with use_backend("chunked"):
        yield


def small_model(name: str, num_items: int = 30, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_items, **(SMALL | overrides)).eval()


def random_items(batch: int, length: int, num_items: int = 30, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, num_items + 1, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ALL)
def test_build_model_with_defaults(name):
    model = build_model(name, num_items=50)
    for field in ("d_model", "n_layers", "max_len", "dropout"):
        assert hasattr(model.config, field)
    hidden = model(random_items(2, 7, 50))
    assert hidden.shape == (2, 7, model.config.d_model)
    scores = model.scores(hidden)
    assert scores.shape == (2, 7, 51)
    assert torch.isneginf(scores[..., 0]).all()  # padding is never recommended


def test_unknown_model_or_field_is_rejected():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("bert4rec", 10)
    with pytest.raises(ValueError, match="no config field"):
        build_model("sasrec", 10, d_state=4)


@pytest.mark.parametrize("name", ALL)
def test_changing_a_later_item_never_changes_earlier_outputs(name):
    model = small_model(name)
    items = random_items(2, 20)
    changed = items.clone()
    changed[:, 12] = changed[:, 12] % 30 + 1
    with torch.no_grad():
        before, after = model(items), model(changed)
    torch.testing.assert_close(after[:, :12], before[:, :12], rtol=0, atol=1e-6)
    assert not torch.allclose(after[:, 12:], before[:, 12:])


@pytest.mark.parametrize("name", ALL)
def test_left_padding_does_not_change_outputs(name):
    model = small_model(name)
    items = random_items(3, 15)
    items[0, :6] = 0  # a shorter history in the same batch
    mask = items != 0
    with torch.no_grad():
        plain = model(items)
        for extra in (1, 9):
            padded = torch.cat([torch.zeros(3, extra, dtype=torch.long), items], dim=1)
            torch.testing.assert_close(model(padded)[:, extra:][mask], plain[mask], rtol=1e-5, atol=1e-5)
        alone = model(items[0:1, 6:])  # the short history without any padding
    torch.testing.assert_close(plain[0, 6:], alone[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", STREAMING)
def test_streaming_in_chunks_equals_one_forward(name):
    model = small_model(name)
    items = random_items(2, 50)  # longer than max_len = 40
    items[1, :13] = 0
    mask = items != 0
    with torch.no_grad():
        whole = model(items)
        state = model.init_state(2)
        parts = []
        for start, end in ((0, 7), (7, 8), (8, 31), (31, 50)):
            hidden, state = model.forward_with_state(items[:, start:end], state)
            parts.append(hidden)
    torch.testing.assert_close(torch.cat(parts, dim=1)[mask], whole[mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["recmamba", "mamba4rec", "lrurec"])
def test_step_equals_the_full_forward(name):
    model = small_model(name)
    items = random_items(2, 12)
    items[0, :3] = 0  # padded steps leave the state untouched
    with torch.no_grad():
        whole = model(items)
        state = model.init_state(2)
        for t in range(12):
            hidden, state = model.step(items[:, t], state)
            real = items[:, t] != 0
            torch.testing.assert_close(hidden[real], whole[real, t], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["sasrec", "linrec", "hstu"])
def test_attention_models_truncate_to_max_len(name):
    model = small_model(name, max_len=8)
    items = random_items(2, 20)
    with torch.no_grad():
        torch.testing.assert_close(model(items)[:, -1], model(items[:, -8:])[:, -1])


def mamba_ssm_state_dict_shapes(d_model, d_state, d_conv, expand):
    """The parameters mamba_ssm.Mamba(d_model, d_state, d_conv, expand) has (bias=False, conv_bias=True)."""
    d_inner, dt_rank = expand * d_model, -(-d_model // 16)
    return {
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,),
        "A_log": (d_inner, d_state),
        "D": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }


@pytest.mark.parametrize(("d_model", "d_state", "d_conv", "expand"), [(64, 16, 4, 2), (40, 8, 3, 1)])
def test_mixer_loads_a_mamba_ssm_state_dict(d_model, d_state, d_conv, expand):
    expected = mamba_ssm_state_dict_shapes(d_model, d_state, d_conv, expand)
    mixer = MambaMixer(d_model, d_state, d_conv, expand)
    assert {name: tuple(value.shape) for name, value in mixer.state_dict().items()} == expected
    torch.manual_seed(0)
    foreign = {name: torch.randn(shape) for name, shape in expected.items()}
    mixer.load_state_dict(foreign, strict=True)
    assert torch.equal(mixer.A_log, foreign["A_log"])


def test_recmamba_blocks_use_mamba_ssm_block_names():
    model = build_model("recmamba", 50, n_layers=2)
    names = set(model.state_dict())
    for layer in range(2):
        for name in mamba_ssm_state_dict_shapes(64, 16, 4, 2):
            assert f"blocks.{layer}.mixer.{name}" in names
        assert f"blocks.{layer}.norm.weight" in names


def test_mixer_initialisation_follows_mamba_ssm():
    torch.manual_seed(0)
    mixer = MambaMixer(32, d_state=8, dt_min=0.001, dt_max=0.1)
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 0.001 - 1e-6 and dt.max() <= 0.1 + 1e-6
    torch.testing.assert_close(mixer.A_log, torch.log(torch.arange(1.0, 9.0)).repeat(64, 1))
    assert torch.equal(mixer.D, torch.ones(64))
    assert mixer.dt_rank == 2


@pytest.mark.parametrize("n_layers", [1, 2])
def test_gru4rec_state_ignores_padding_with_one_or_more_layers(n_layers):
    model = small_model("gru4rec", n_layers=n_layers)
    items = random_items(3, 10)
    items[0, :4] = 0
    items[2, :] = 0  # a user with nothing yet keeps the carried state
    with torch.no_grad():
        start = torch.randn(n_layers, 3, 32)
        _, state = model.forward_with_state(items, start)
        _, state_alone = model.forward_with_state(items[0:1, 4:], start[:, 0:1])
    torch.testing.assert_close(state[:, 0], state_alone[:, 0], rtol=1e-5, atol=1e-6)
    assert torch.equal(state[:, 2], start[:, 2])


@pytest.mark.parametrize("name", ["sasrec", "linrec", "hstu"])
def test_last_position_shortcut_equals_the_full_forward(name):
    model = small_model(name, max_len=16)
    items = random_items(3, 16)
    items[1, :5] = 0
    with torch.no_grad():
        torch.testing.assert_close(model.forward_last(items), model(items)[:, -1], rtol=1e-5, atol=1e-5)
