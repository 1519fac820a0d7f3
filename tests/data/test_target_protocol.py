"""Which events after a cut-off are targets: each rule picks exactly its events per user and window, the
rest stay in the history as context (never trained on, never ranked), and every result states the rule."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from pipelines.data import export_dir_for
from pipelines.training.params import split_params
from recmodels.data.split_data import CONTEXT, TEST, TRAIN, VALID, SplitData, target_protocol
from recmodels.evaluation.evaluate import select_targets
from recmodels.training.windows import WindowIndex
from tests.data.conftest import TINY, check_outcomes, materialize, ops_config

VALID_CUTOFF_S, TEST_CUTOFF_S = 978307200, 978652800  # 2001-01-01 and 2001-01-05, UTC
DATES = {"valid_start": "2001-01-01", "test_start": "2001-01-05"}
V, T = VALID_CUTOFF_S, TEST_CUTOFF_S
# user -> (item, seconds since the epoch) in time order; every item occurs once, so an item names its event
LOG = {
    1: [
        (101, V - 2000),
        (102, V - 1000),
        (103, V + 1),
        (104, V + 2),
        (105, V + 3),
        (106, V + 4),
        (107, T + 1),
        (108, T + 2),
        (109, T + 3),
    ],
    2: [(201, V + 1), (202, V + 2), (203, T + 1)],  # first seen after the cut-off
    3: [(301, V - 500), (302, T + 1)],  # nothing in the validation window
}
EXPECTED = {  # labels per user, in time order: 0 train, 1 valid target, 2 test target, 3 context
    "first_per_user": [[0, 0, 1, 3, 3, 3, 2, 3, 3], [3, 1, 2], [0, 2]],
    "last_per_user": [[0, 0, 3, 3, 3, 1, 3, 3, 2], [3, 1, 2], [0, 2]],
    "all": [[0, 0, 1, 1, 1, 1, 2, 2, 2], [3, 1, 2], [0, 2]],
}


def hand_log(paths, **splits: object) -> dict:
    """The run config of LOG as a MovieLens file: three users whose labels can be checked by hand."""
    folder = paths.landing / "movielens"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{user}::{item}::5::{seconds}\n" for user, events in LOG.items() for item, seconds in events]
    (folder / "ratings.dat").write_text("".join(lines))
    return ops_config(
        raw_events={"source": "movielens", "landing_dir": str(folder), "dataset": "hand"},
        events={"min_events_per_user": 1},
        splits={**DATES, **splits},
    )


def labels(dataset: str) -> list[list[int]]:
    return pq.read_table(export_dir_for(dataset) / "histories.parquet")["split"].to_pylist()


def dense_item_ids(dataset: str) -> dict[int, int]:
    """Raw item id -> the dense id the export uses."""
    item_map = pq.read_table(export_dir_for(dataset) / "item_map.parquet").to_pydict()
    return {int(raw): item for item, raw in zip(item_map["item_id"], item_map["item_raw"], strict=True)}


def metadata(dataset: str) -> dict:
    return json.loads((export_dir_for(dataset) / "metadata.json").read_text())


@pytest.mark.parametrize("rule", sorted(EXPECTED))
def test_each_rule_picks_exactly_its_events(paths, rule):
    result = materialize(hand_log(paths, targets=rule))
    assert all(check_outcomes(result).values())
    assert labels("hand") == EXPECTED[rule]


def test_sample_takes_at_most_the_cap_and_all_of_a_shorter_window(paths):
    materialize(hand_log(paths, targets="sample_per_user", targets_per_user=2, targets_seed=7))
    user1, user2, user3 = labels("hand")
    assert user1[:2] == [0, 0] and set(user1[2:]) <= {VALID, TEST, CONTEXT}
    assert user1[2:6].count(VALID) == 2 and user1[6:].count(TEST) == 2  # 4 and 3 events, cap 2
    assert (user2, user3) == ([CONTEXT, VALID, TEST], [TRAIN, TEST])  # one candidate per window: taken


def sample_labels(seed: int) -> list[list[int]]:
    config = {**TINY, "splits": {"config": {"targets": "sample_per_user", "targets_seed": seed}}}
    assert all(check_outcomes(materialize(config)).values())
    return labels("synthetic")


def test_sample_is_the_same_for_a_seed_and_differs_for_another(paths):
    first, again, other = sample_labels(0), sample_labels(0), sample_labels(1)
    assert first == again
    assert first != other
    assert [[label == TRAIN for label in user] for user in other] == [
        [label == TRAIN for label in user] for user in first
    ]


def test_sample_per_user_holds_min_of_cap_and_candidates_in_each_window(paths):
    materialize(TINY)  # the default: sample_per_user, 10 per user, seed 0
    meta = metadata("synthetic")
    histories = pq.read_table(export_dir_for("synthetic") / "histories.parquet")
    for stamps, split in zip(histories["timestamps"].to_pylist(), histories["split"].to_pylist(), strict=True):
        stamps, split = np.array(stamps[1:]), np.array(split[1:])  # a history's first event is never a target
        in_valid = (stamps >= meta["cutoff_valid_ms"]) & (stamps < meta["cutoff_test_ms"])
        in_test = stamps >= meta["cutoff_test_ms"]
        assert (split[in_valid] == VALID).sum() == min(10, in_valid.sum())
        assert (split[in_test] == TEST).sum() == min(10, in_test.sum())
        assert set(split[in_valid | in_test]) <= {VALID, TEST, CONTEXT}


def test_context_is_never_trained_on_nor_ranked_but_seen_by_later_targets(paths):
    materialize(hand_log(paths, targets="first_per_user"))
    data, dense = SplitData.load(export_dir_for("hand")), dense_item_ids("hand")
    context = {dense[raw] for raw in (104, 105, 106, 108, 109, 201)}
    windows = WindowIndex.of(data, max_len=4)
    inputs, targets = windows.window(np.arange(len(windows)))
    assert not context & set(inputs.ravel()) and not context & set(targets.ravel())
    valid, test = select_targets(data, "valid"), select_targets(data, "test")
    assert set(valid.items) == {dense[103], dense[202]} and set(test.items) == {dense[107], dense[203], dense[302]}
    user1_test = test.positions[test.items == dense[107]]
    assert user1_test.tolist() == [6]  # predicted from all six earlier events, the three context ones included


def test_leave_one_out_refuses_another_rule_clearly(paths):
    config = {**TINY, "splits": {"config": {"mode": "leave_one_out", "targets": "first_per_user"}}}
    with pytest.raises(ValidationError) as failure:
        materialize(config)
    [error] = failure.value.errors()
    assert "targets 'first_per_user' does not apply to mode leave_one_out" in error["msg"]
    assert "last (test) and second-to-last (validation)" in error["msg"]


def test_leave_one_out_states_its_rule(paths):
    config = {**TINY, "splits": {"config": {"mode": "leave_one_out", "targets": "last_per_user"}}}
    result = materialize(config)
    assert all(check_outcomes(result).values())
    assert target_protocol(metadata("synthetic")) == "last_per_user"


def test_the_protocol_is_stated_in_the_export_the_asset_and_the_run_params(paths):
    result = materialize(TINY)
    meta = metadata("synthetic")
    assert meta["target_protocol"] == {
        "valid": "sample_per_user", "test": "sample_per_user", "targets_per_user": 10, "targets_seed": 0,
    }  # fmt: skip
    assert meta["num_context_events"] > 0
    assert target_protocol(meta) == "sample_per_user(10, seed 0)"
    asset = result.asset_materializations_for_node("splits")[0].metadata
    assert asset["target_protocol"].value == "sample_per_user(10, seed 0)"
    assert asset["num_context_events"].value == meta["num_context_events"]
    assert split_params(meta)["data.target_protocol"] == "sample_per_user(10, seed 0)"


def test_a_setting_the_rule_ignores_does_not_change_the_export(paths):
    materialize(hand_log(paths, targets="first_per_user"))
    fingerprint = metadata("hand")["fingerprint"]
    materialize(hand_log(paths, targets="first_per_user", targets_per_user=3, targets_seed=5), selection="splits")
    assert metadata("hand")["fingerprint"] == fingerprint
    assert metadata("hand")["target_protocol"]["targets_seed"] is None


def test_exports_before_the_protocol_read_as_every_event():
    assert target_protocol({"split_mode": "global_time"}) == "all"
    assert target_protocol({"split_mode": "leave_one_out"}) == "last_per_user"


@pytest.mark.parametrize(
    ("cutoffs", "message"),
    [
        (
            {"valid_start": "2001-01-05", "test_start": "2001-01-05"},
            r"the validation cut-off \(2001-01-05 00:00:00 UTC\) must be before the test cut-off \(2001-01-05 "
            r"00:00:00 UTC\), got valid_start '2001-01-05' and test_start '2001-01-05': with these the validation "
            "window is empty",
        ),
        (
            {"valid_start": "", "test_start": "", "valid_quantile": 0.9, "test_quantile": 0.9},
            r"need 0 < valid_quantile < test_quantile <= 1 \(an empty validation window cannot choose an epoch\)",
        ),
    ],
    ids=["dates", "quantiles"],
)
def test_equal_cutoffs_for_validation_and_test_are_refused(paths, cutoffs, message):
    """An empty validation window would leave no epoch to choose: training would silently keep its first."""
    with pytest.raises(ValueError, match=message):
        materialize(hand_log(paths, **cutoffs))
