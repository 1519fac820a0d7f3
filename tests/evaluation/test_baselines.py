"""The popularity baselines rank targets by training counts with pessimistic ties and see no held-out event."""

import numpy as np
import pytest

from recmodels.data.split_data import SplitData, write_split_export
from recmodels.evaluation.baselines import evaluate_baseline, popularity_ranks, recent_start, training_counts


@pytest.fixture
def popular_split(tmp_path) -> SplitData:
    """Item 1 is the most trained item overall, item 2 only lately; held-out events (split 1, 2) favour item 3."""
    histories = [[1, 1, 1, 2, 3, 3], [1, 2, 2, 3, 3, 2]]
    splits = [[0, 0, 0, 0, 1, 2], [0, 0, 0, 1, 2, 2]]
    timestamps = [[0, 10, 20, 95, 100, 110], [5, 96, 97, 101, 102, 120]]
    export = write_split_export(tmp_path / "export", histories, splits, timestamps, num_items=4)
    return SplitData.load(export)


def test_counts_come_from_training_events_only(popular_split):
    assert training_counts(popular_split).tolist() == [0, 4, 3, 0, 0]
    assert training_counts(popular_split, since_ms=recent_start(popular_split)).tolist() == [0, 0, 3, 0, 0]


def test_popularity_ties_rank_pessimistically():
    counts = np.array([0, 5, 2, 2, 0])
    assert popularity_ranks(counts, np.array([1, 2, 3, 4])).tolist() == [1, 3, 3, 4]


def test_baselines_are_evaluated_like_models(popular_split):
    most = evaluate_baseline("most_popular", popular_split, "test", ks=(1,))
    recent = evaluate_baseline("recent_popular", popular_split, "test", ks=(1,))
    assert most.num_targets == recent.num_targets == 3  # test targets: item 3, item 3, item 2
    assert most.overall["hr_1"] == 0.0  # item 1 ranks first, never a test target
    assert recent.overall["hr_1"] == pytest.approx(1 / 3)  # item 2 is first among recent training events
    assert list(most.by_bucket) == ["len_00000_00128"]


def test_unknown_baseline_is_named(popular_split):
    with pytest.raises(ValueError, match="unknown baseline 'random'"):
        evaluate_baseline("random", popular_split, "test")
