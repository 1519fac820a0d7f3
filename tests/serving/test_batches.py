"""Event batches as the engines take them: each user's events left padded into one (B, T) array."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from recmodels.serving.engines import left_padded

rows_of_items = st.lists(st.lists(st.integers(1, 10**12), max_size=6), max_size=6)


@given(rows=rows_of_items, width=st.one_of(st.none(), st.integers(0, 8)))
def test_each_row_keeps_its_last_items_at_the_right(rows, width):
    out = left_padded([np.array(r, np.int64) for r in rows], width)
    expected_width = max((len(r) for r in rows), default=0) if width is None else width
    assert out.shape == (len(rows), expected_width) and out.dtype == np.int64
    for b, row in enumerate(rows):
        kept = row[max(len(row) - expected_width, 0) :]
        assert out[b, expected_width - len(kept) :].tolist() == kept
        assert not out[b, : expected_width - len(kept)].any()
