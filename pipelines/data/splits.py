"""``sequences`` -> ``splits``: label every event train (0), validation target (1), test target (2) or
context (3).

Global time mode cuts all users at the same two timestamps (from explicit dates or quantiles), so no
training event comes from the evaluation period; in each window the target rule picks a bounded number of
targets per user, and the other events stay in the history as context (ARCHITECTURE.md, "Which events are
targets"). Leave-one-out is there for comparison with published results. Items first seen after the
validation cut-off stay in the catalogue: they are counted, and targets on items never seen in training are
reported as cold targets.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from pipelines.data.config import SplitsConfig, TargetRule
from pipelines.data.events import build_by_user_batches
from pipelines.data.sources.timestamps import utc_ms
from pipelines.data.sql import fetch_one, run_sql


@dataclass(frozen=True)
class SplitSummary:
    mode: str
    cutoff_valid_ms: int | None
    cutoff_test_ms: int | None
    num_users: int
    num_items: int
    num_train_events: int
    num_valid_targets: int
    num_test_targets: int
    num_context_events: int
    num_cold_valid_targets: int
    num_cold_test_targets: int
    num_train_items: int
    items_first_seen_after_valid_cutoff: int
    target_protocol: dict  # Contract 1: {"valid", "test", "targets_per_user", "targets_seed"}


def protocol_of(config: SplitsConfig) -> dict:
    """The resolved target rule as recorded in the export; the draw's size and seed only where they are used,
    so that a setting the rule ignores never changes the export's fingerprint."""
    rule: TargetRule = config.target_rule
    sampled = rule == "sample_per_user"
    return {
        "valid": rule,
        "test": rule,
        "targets_per_user": config.targets_per_user if sampled else None,
        "targets_seed": config.targets_seed if sampled else None,
    }


def targets_per_window(protocol: dict) -> int | None:
    """The most targets a user may have in one window under ``protocol`` (None: no limit)."""
    if protocol["test"] == "all":
        return None
    return protocol["targets_per_user"] if protocol["test"] == "sample_per_user" else 1


def cutoffs(con: duckdb.DuckDBPyConnection, config: SplitsConfig) -> tuple[int, int]:
    """``(cutoff_valid_ms, cutoff_test_ms)`` from explicit dates when both are given, else from quantiles.

    The validation cut-off must come strictly first: with equal cut-offs the validation window is empty, no
    epoch can be chosen on it, and training would silently keep its first epoch."""
    if config.valid_start or config.test_start:
        if not (config.valid_start and config.test_start):
            raise ValueError("give both valid_start and test_start, or neither (to use quantiles)")
        valid, test = utc_ms(config.valid_start), utc_ms(config.test_start)
        given = f"valid_start {config.valid_start!r} and test_start {config.test_start!r}"
    else:
        if not 0.0 < config.valid_quantile < config.test_quantile <= 1.0:
            raise ValueError(
                f"need 0 < valid_quantile < test_quantile <= 1 (an empty validation window cannot choose an epoch), "
                f"got {config.valid_quantile}, {config.test_quantile}"
            )
        valid, test = fetch_one(
            con, "cutoffs_quantile", valid_quantile=config.valid_quantile, test_quantile=config.test_quantile
        )
        given = f"valid_quantile {config.valid_quantile} and test_quantile {config.test_quantile}"
    if valid >= test:
        raise ValueError(
            f"the validation cut-off ({_utc(valid)}) must be before the test cut-off ({_utc(test)}), got {given}: "
            "with these the validation window is empty and no epoch could be chosen on it"
        )
    return int(valid), int(test)


def _utc(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def build_splits(con: duckdb.DuckDBPyConnection, config: SplitsConfig) -> SplitSummary:
    cutoff_valid = cutoff_test = None
    protocol = protocol_of(config)
    if config.mode == "global_time":
        cutoff_valid, cutoff_test = cutoffs(con, config)
        build_by_user_batches(
            con,
            "splits",
            "splits_global_time",
            cutoff_valid=cutoff_valid,
            cutoff_test=cutoff_test,
            targets=config.target_rule,
            cap=targets_per_window(protocol),
            seed=config.targets_seed,
        )
    else:
        build_by_user_batches(con, "splits", "splits_leave_one_out")
    stats = fetch_one(con, "split_stats")
    train, valid, test, context, cold_valid, cold_test, train_items, num_items, users = stats
    first_seen_late = 0
    if cutoff_valid is not None:
        first_seen_late = int(fetch_one(con, "items_first_seen_after", cutoff_valid=cutoff_valid)[0])
    return SplitSummary(
        config.mode,
        cutoff_valid,
        cutoff_test,
        users,
        num_items,
        train,
        valid,
        test,
        context,
        cold_valid,
        cold_test,
        train_items,
        first_seen_late,
        protocol,
    )
