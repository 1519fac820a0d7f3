"""Events at one moment have no order (the export keeps the source's row order among them, which a model could
learn), so under the global time split a target is predicted only from strictly earlier events: the split never
chooses an event at the moment of a history's first event, and the evaluation and the training windows read no
event at a target's own timestamp. Leave-one-out keeps the published protocol's stable order."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.data import export_dir_for
from recmodels.data.split_data import SplitData
from recmodels.evaluation.evaluate import select_targets
from recmodels.training.windows import WindowIndex
from tests.data.conftest import check_outcomes, materialize, ops_config

V, T = 978307200, 978652800  # 2001-01-01 and 2001-01-05, UTC, in seconds
LOG = {  # user -> (item, seconds) in row order; every item occurs once, so an item names its event
    1: [(101, V - 2000), (102, V - 1000), (103, V - 1000), (104, V + 5), (105, V + 5), (106, T + 1), (107, T + 1)],
    2: [(201, V + 1), (202, V + 1), (203, V + 2), (204, T + 3)],  # starts with two events at one moment
}
LABELS = {  # 0 train, 1 validation target, 2 test target, 3 context
    "all": [[0, 0, 0, 1, 1, 2, 2], [3, 3, 1, 2]],
    "first_per_user": [[0, 0, 0, 1, 3, 2, 3], [3, 3, 1, 2]],
}


def split_log(paths, **splits: object) -> SplitData:
    """LOG as a MovieLens file (seconds: simultaneous events are common there), split and exported."""
    folder = paths.landing / "movielens"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{user}::{item}::5::{seconds}\n" for user, events in LOG.items() for item, seconds in events]
    (folder / "ratings.dat").write_text("".join(lines))
    result = materialize(
        ops_config(
            raw_events={"source": "movielens", "landing_dir": str(folder), "dataset": "tied"},
            events={"min_events_per_user": 1},
            splits=splits,
        )
    )
    assert all(check_outcomes(result).values())
    return SplitData.load(export_dir_for("tied"))


def raw_items(data: SplitData, dense: np.ndarray) -> list[int]:
    """Dense item ids as the raw ids of LOG (0: no item)."""
    item_map = pq.read_table(export_dir_for("tied") / "item_map.parquet").to_pydict()
    raw = dict(zip(item_map["item_id"], map(int, item_map["item_raw"]), strict=True))
    return [raw.get(int(item), 0) for item in dense]


@pytest.mark.parametrize("rule", sorted(LABELS))
def test_an_event_at_the_moment_of_a_historys_first_event_is_never_a_target(paths, rule):
    data = split_log(paths, valid_start="2001-01-01", test_start="2001-01-05", targets=rule)
    labels = [data.split[data.offsets[row] : data.offsets[row + 1]].tolist() for row in range(data.num_users)]
    assert labels == LABELS[rule]  # user 2's 202 shares 201's moment: nothing strictly earlier to predict it from
    assert len(select_targets(data, "valid").items) == data.metadata["num_valid_targets"]
    assert len(select_targets(data, "test").items) == data.metadata["num_test_targets"]


def test_global_time_targets_and_training_windows_read_no_event_at_their_own_moment(paths):
    data = split_log(paths, valid_start="2001-01-01", test_start="2001-01-05", targets="all")
    for split, expected in (("valid", {104: 3, 105: 3, 203: 2}), ("test", {106: 5, 107: 5, 204: 3})):
        targets = select_targets(data, split)
        assert dict(zip(raw_items(data, targets.items), targets.history_lengths.tolist(), strict=True)) == expected
    windows = WindowIndex.of(data, max_len=4)
    inputs, targets = windows.window(np.arange(len(windows)))
    assert raw_items(data, inputs[0]) == [0, 0, 101, 102]
    assert raw_items(data, targets[0]) == [0, 0, 102, 0]  # 103 shares 102's moment: no target


def test_leave_one_out_keeps_the_stable_order_of_simultaneous_events(paths):
    data = split_log(paths, mode="leave_one_out")
    targets = select_targets(data, "test")
    assert dict(zip(raw_items(data, targets.items), targets.history_lengths.tolist(), strict=True)) == {107: 6, 204: 3}
    windows = WindowIndex.of(data, max_len=8)
    _, targets = windows.window(np.arange(len(windows)))
    assert raw_items(data, targets[0])[-4:] == [102, 103, 104, 105]
