"""A model with a bfloat16 item table is served from that table, upcast a block at a time, never from a
float32 copy of it (at LFM-1b's 32 M tracks the copy alone would be 8 GB)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recmodels.serving import service as service_module
from recmodels.serving.service import RecommendationService


@pytest.mark.parametrize("name", ["recmamba", "sasrec"])
def test_a_bfloat16_table_is_scored_in_blocks_as_its_float32_values(served_folder, monkeypatch, name):
    monkeypatch.setattr(service_module, "SCORE_BLOCK_ROWS", 16)  # 51 rows: four blocks, the last ragged
    service = RecommendationService(served_folder(name, item_dtype="bfloat16"))
    assert service.embedding.dtype == torch.bfloat16
    hidden = np.random.default_rng(0).standard_normal(service.embedding.shape[1]).astype(np.float32)
    expected = (service.embedding.float() @ torch.from_numpy(hidden)).numpy()
    scores = service.scores(hidden)
    assert scores[0] == -np.inf
    np.testing.assert_allclose(scores[1:], expected[1:], rtol=1e-6, atol=1e-6)
    answer = service.recommend("user-0", 5, False)
    assert answer.scores == sorted(answer.scores, reverse=True) and len(answer.items) == 5
    service.close()
