"""The embedded synthetic log: every user active until the end of its period, so that a global time split's
validation and test windows hold every user, not only the longest histories."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.data.sources.synthetic import START_MS, generate, spec_for

DAY_MS = 86_400_000


@pytest.mark.parametrize("scale", ["tiny", "default"])
def test_every_user_is_active_from_the_first_quarter_to_the_last_day(scale):
    spec = spec_for(scale, seed=3)
    events = generate(spec).to_pandas()
    period_end = START_MS + spec.period_days * DAY_MS
    spans = events.groupby("user_id")["time_ms"].agg(["min", "max"])
    assert len(spans) == spec.users
    assert (spans["max"] >= period_end - DAY_MS).all() and (spans["max"] < period_end).all()
    assert (spans["min"] >= START_MS).all() and (spans["min"] < START_MS + spec.period_days * DAY_MS // 4).all()
    assert (events["time_ms"] % 1000 == 0).all()  # whole seconds, as LFM-1b's layout writes them
    assert (events.groupby("user_id")["time_ms"].diff().dropna() >= 0).all()  # each history stays in time order
    valid_cut = np.quantile(events["time_ms"], 0.9)
    assert events.loc[events["time_ms"] > valid_cut, "user_id"].nunique() == spec.users


def test_the_default_logs_validation_and_test_windows_hold_every_user():
    """The main job's split (quantiles 0.9 and 0.95): a verdict over all 100 users, not the longest histories'."""
    events = generate(spec_for("default", seed=0)).to_pandas()
    valid_cut, test_cut = np.quantile(events["time_ms"], [0.9, 0.95])
    in_valid = events["time_ms"].between(valid_cut, test_cut, inclusive="right")
    assert events.loc[in_valid, "user_id"].nunique() == 100
    assert events.loc[events["time_ms"] > test_cut, "user_id"].nunique() == 100


def test_the_same_seed_gives_the_same_log_and_another_seed_another():
    first, again, other = (generate(spec_for("tiny", seed=s)) for s in (1, 1, 2))
    assert first.equals(again) and not first.equals(other)
