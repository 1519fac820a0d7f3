"""A registered version's weights carried into a model of a grown catalogue, row by raw item id."""

import torch

from pipelines.registry import ITEM_TABLE, RegisteredWeights, adapt_to_catalogue


def test_embedding_rows_follow_raw_ids_and_new_items_keep_fresh_rows():
    old_table = torch.arange(4 * 2, dtype=torch.float32).reshape(4, 2)  # padding row + items a, b, c
    current = RegisteredWeights({ITEM_TABLE: old_table, "head.weight": torch.ones(3, 2)}, ["a", "b", "c"])
    fresh = {ITEM_TABLE: torch.full((5, 2), -1.0), "head.weight": torch.zeros(3, 2), "new.bias": torch.zeros(2)}

    state, skipped = adapt_to_catalogue(current, fresh, ["c", "x", "a", "b"])  # ids reassigned, "x" is new

    assert torch.equal(state[ITEM_TABLE][1], old_table[3])  # c
    assert torch.equal(state[ITEM_TABLE][2], fresh[ITEM_TABLE][2])  # x: fresh
    assert torch.equal(state[ITEM_TABLE][3], old_table[1])  # a
    assert torch.equal(state[ITEM_TABLE][4], old_table[2])  # b
    assert torch.equal(state["head.weight"], torch.ones(3, 2))
    assert skipped == ["new.bias"]


def test_a_changed_layer_shape_keeps_the_fresh_weights():
    current = RegisteredWeights({"layer.weight": torch.ones(4, 4)}, [])
    state, skipped = adapt_to_catalogue(current, {"layer.weight": torch.zeros(8, 4)}, [])
    assert torch.equal(state["layer.weight"], torch.zeros(8, 4))
    assert skipped == ["layer.weight"]
