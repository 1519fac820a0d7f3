"""Streaming a history event by event (or in batches) into a stored state equals encoding it whole."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recmodels.models import build_model
from recmodels.serving import engines, fused_step
from recmodels.serving.engines import MambaEngine, engine_for

NUM_ITEMS = 300
LENGTHS = (1, 3, 40, 95)  # with max_len 16 and chunks of 7: many chunk boundaries, longer than max_len


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual.astype(np.float64) - expected) / np.linalg.norm(expected.astype(np.float64)))


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "ENCODE_CHUNK", 7)


def histories(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, NUM_ITEMS + 1, size=n) for n in LENGTHS]


def model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, NUM_ITEMS, d_model=16, n_layers=2, max_len=16)


def timestamps(rows: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """Increasing ms times for each history, a second to ten days apart."""
    rng = np.random.default_rng(seed + 100)
    return [1_700_000_000_000 + np.cumsum(rng.integers(1_000, 10 * 86_400_000, size=len(r))) for r in rows]


def stream(
    engine: engines.Engine, rows: list[np.ndarray], per_call: int, times: list[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Advance fresh users by ``per_call`` events per call (at their ``times``) until every history is in."""
    states, hidden = engine.initial(len(rows))
    for start in range(0, max(map(len, rows)), per_call):
        items = engines.left_padded([r[start : start + per_call] for r in rows])
        batch_times = None if times is None else engines.left_padded([t[start : start + per_call] for t in times])
        engine.advance(items, states, hidden, batch_times)
    return states, hidden


def top_items(model: torch.nn.Module, hidden: np.ndarray, k: int = 10) -> np.ndarray:
    with torch.no_grad():
        return model.scores(torch.from_numpy(hidden)).topk(k).indices.numpy()


@pytest.mark.parametrize("name", ["recmamba", "gru4rec", "lrurec"])
@pytest.mark.parametrize("per_call", [1, 6])
def test_streamed_state_equals_whole_history_encode(name: str, per_call: int):
    recommender = model(name)
    engine = engine_for(recommender)
    rows = histories()
    whole_states, whole_hidden = engine.encode(rows)
    states, hidden = stream(engine, rows, per_call)
    assert relative_error(states, whole_states) <= 1e-5
    assert relative_error(hidden, whole_hidden) <= 1e-5
    np.testing.assert_array_equal(top_items(recommender, hidden), top_items(recommender, whole_hidden))


@pytest.mark.parametrize("name", ["recmamba", "gru4rec", "lrurec"])
def test_encoded_hidden_equals_the_models_forward(name: str):
    recommender = model(name).eval()
    rows = histories()
    _, hidden = engine_for(recommender).encode(rows)
    for row, vector in zip(rows, hidden, strict=True):
        with torch.no_grad():
            expected = recommender(torch.from_numpy(row)[None])[0, -1].numpy()
        assert relative_error(vector, expected) <= 1e-5


@pytest.mark.parametrize("layerwise_from", [fused_step.LAYERWISE_MIN_BATCH, 1])
def test_fused_recmamba_step_equals_the_models_step(monkeypatch: pytest.MonkeyPatch, layerwise_from: int):
    monkeypatch.setattr(fused_step, "LAYERWISE_MIN_BATCH", layerwise_from)  # 1: the large-batch path
    recommender = model("recmamba")
    fused = MambaEngine(recommender)
    plain = MambaEngine(recommender)
    plain.fused = None  # the per-operator path: model.step through recmodels.ops
    rows = histories(seed=1)
    fused_states, fused_hidden = stream(fused, rows, per_call=5)
    plain_states, plain_hidden = stream(plain, rows, per_call=5)
    assert relative_error(fused_states, plain_states) <= 1e-5
    assert relative_error(fused_hidden, plain_hidden) <= 1e-5


@pytest.mark.parametrize("name", ["recmamba", "lrurec"])
def test_state_size_does_not_grow_with_history(name: str):
    engine = engine_for(model(name))
    short, _ = engine.encode([np.arange(1, 3)])
    long, _ = engine.encode([np.arange(1, 200) % NUM_ITEMS + 1])
    assert short.shape == long.shape


def test_window_models_keep_the_last_max_len_items():
    recommender = model("sasrec")
    engine = engine_for(recommender)
    rows = histories()
    whole_states, whole_hidden = engine.encode(rows)
    states, hidden = stream(engine, rows, per_call=4)
    np.testing.assert_array_equal(states, whole_states)
    assert relative_error(hidden, whole_hidden) <= 1e-5
    np.testing.assert_array_equal(states[-1], rows[-1][-16:])


@pytest.mark.parametrize("per_call", [1, 6])
def test_hstu_keeps_its_last_max_len_items_with_their_times(per_call: int):
    recommender = model("hstu").eval()
    engine = engine_for(recommender)
    rows = histories()
    times = timestamps(rows)
    whole_states, whole_hidden = engine.encode(rows, times)
    states, hidden = stream(engine, rows, per_call, times)
    np.testing.assert_array_equal(states, whole_states)
    assert relative_error(hidden, whole_hidden) <= 1e-5
    np.testing.assert_array_equal(states[-1], np.concatenate([rows[-1][-16:], times[-1][-16:]]))
    for row, row_times, vector in zip(rows, times, hidden, strict=True):  # the state re-encodes the whole history
        with torch.no_grad():
            expected = recommender(torch.from_numpy(row)[None], torch.from_numpy(row_times)[None])[0, -1].numpy()
        assert relative_error(vector, expected) <= 1e-5


def test_hstu_state_refuses_events_without_times():
    engine = engine_for(model("hstu"))
    with pytest.raises(ValueError, match="reads event times"):
        engine.encode(histories())
