"""Blocking asset checks of the data assets, computed inside each asset on its own connection.

A failed check stops downstream assets (and so training) from running on bad data.
"""

from __future__ import annotations

import dagster as dg
import duckdb

from pipelines.data.config import EventsConfig
from pipelines.data.splits import SplitSummary, targets_per_window
from pipelines.data.sql import fetch_one


def specs(asset: str, *names_and_descriptions: tuple[str, str]) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name, asset=asset, description=description, blocking=True)
        for name, description in names_and_descriptions
    ]


RAW_EVENTS_CHECKS = specs("raw_events", ("complete_rows", "Every row has a user, an item and a timestamp >= 0."))
EVENTS_CHECKS = specs(
    "events",
    ("no_duplicate_events", "No (user, item, timestamp) occurs twice."),
    ("min_lengths_honoured", "Users meet min_events_per_user (items min_item_occurrences under k-core)."),
    ("dense_ids", "User and item ids run 1..n without gaps; 0 is padding."),
)
SEQUENCES_CHECKS = specs("sequences", ("sequences_cover_events", "Each event once, in time order."))
SPLITS_CHECKS = specs(
    "splits",
    (
        "no_train_event_at_or_after_cutoff",
        "No train event at or after t1; targets inside their window; context only after t1.",
    ),
    (
        "targets_follow_protocol",
        "Per user and window at most the protocol's targets, none at a history's first event, and at least one "
        "where the window holds a predictable event.",
    ),
    ("splits_disjoint_and_complete", "Every event has exactly one label in {0, 1, 2, 3}."),
    ("train_events_not_empty", "At least one training event (a wrong time unit or split date leaves none)."),
    ("targets_not_empty", "At least one validation and one test target."),
)


def _result(name: str, passed: bool, **metadata: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=name, passed=bool(passed), metadata=metadata)


def raw_events_checks(con: duckdb.DuckDBPyConnection) -> list[dg.AssetCheckResult]:
    (bad,) = fetch_one(con, "check_raw_events")
    return [_result("complete_rows", bad == 0, incomplete_rows=bad)]


def events_checks(con: duckdb.DuckDBPyConnection, config: EventsConfig) -> list[dg.AssetCheckResult]:
    (duplicates,) = fetch_one(con, "check_duplicate_events")
    min_items = config.min_item_occurrences if config.k_core else 0
    short_users, rare_items = fetch_one(
        con, "check_min_lengths", min_user_events=config.min_events_per_user, min_item_count=min_items
    )
    (dense,) = fetch_one(con, "check_dense_ids")
    return [
        _result("no_duplicate_events", duplicates == 0, duplicate_groups=duplicates),
        _result("min_lengths_honoured", short_users == rare_items == 0, short_users=short_users, rare_items=rare_items),
        _result("dense_ids", dense),
    ]


def sequences_checks(con: duckdb.DuckDBPyConnection) -> list[dg.AssetCheckResult]:
    uncovered, bad_rows = fetch_one(con, "check_sequences")
    return [
        _result("sequences_cover_events", uncovered == bad_rows == 0, uncovered_events=uncovered, bad_rows=bad_rows)
    ]


def splits_checks(con: duckdb.DuckDBPyConnection, summary: SplitSummary) -> list[dg.AssetCheckResult]:
    if summary.mode == "global_time":
        cutoffs = {"cutoff_valid": summary.cutoff_valid_ms, "cutoff_test": summary.cutoff_test_ms}
        train_late, valid_out, test_early, context_early = fetch_one(con, "check_split_cutoffs", **cutoffs)
        cutoff = _result(
            "no_train_event_at_or_after_cutoff",
            train_late == valid_out == test_early == context_early == 0,
            train_at_or_after_t1=train_late,
            valid_outside_window=valid_out,
            test_before_t2=test_early,
            context_before_t1=context_early,
        )
        over_cap, first_events, skipped = fetch_one(
            con, "check_split_targets", cap=targets_per_window(summary.target_protocol), **cutoffs
        )
        protocol = _result(
            "targets_follow_protocol",
            over_cap == first_events == skipped == 0,
            users_over_cap=over_cap,
            targets_at_first_event=first_events,
            windows_without_target=skipped,
        )
    else:
        (bad_users,) = fetch_one(con, "check_split_leave_one_out")
        cutoff = _result("no_train_event_at_or_after_cutoff", bad_users == 0, users_mislabelled=bad_users)
        # leave-one-out's protocol is its labels: the last two events, checked just above
        protocol = _result("targets_follow_protocol", bad_users == 0, users_mislabelled=bad_users)
    bad_rows, unlabelled, missing_users = fetch_one(con, "check_splits_complete")
    complete = _result(
        "splits_disjoint_and_complete",
        bad_rows == unlabelled == missing_users == 0,
        bad_rows=bad_rows,
        unlabelled_events=unlabelled,
        missing_users=missing_users,
    )
    populated = [
        _result("train_events_not_empty", summary.num_train_events > 0, num_train_events=summary.num_train_events),
        _result(
            "targets_not_empty",
            summary.num_valid_targets > 0 and summary.num_test_targets > 0,
            num_valid_targets=summary.num_valid_targets,
            num_test_targets=summary.num_test_targets,
        ),
    ]
    return [cutoff, protocol, complete, *populated]
