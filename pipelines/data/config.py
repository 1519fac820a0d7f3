"""Run configuration of the data assets: one ``dagster.Config`` per asset, editable in the launchpad.

A YAML run config for ``dagster asset materialize -c run.yaml`` looks like::

    ops:
      raw_events:
        config:
          source: synthetic          # synthetic | kuairand | lfm1b | movielens | csv | parquet
          synthetic_scale: tiny      # default (~100 users x 2k-5k events) | tiny (30 users x 300-600)
          seed: 0
      events:
        config: {min_events_per_user: 5, min_item_occurrences: 1, k_core: false}
      splits:
        config: {mode: global_time, valid_quantile: 0.9, test_quantile: 0.95}

Every field has a default, so no config at all materializes the synthetic default.

``raw_events`` (what to ingest):
- ``source``: which parser reads the landing folder.
- ``dataset``: the export's name (``data/exports/<dataset>/``); empty = the source name.
- ``landing_dir``: folder of raw files; empty = ``RECMAMBA_HOME/data/landing/<source>``.
- ``file_glob``: which files in it; empty = the source's usual pattern (``*.csv``, ``*.txt``, ...).
- ``kuairand_interactions``: which exposures count: ``all``, ``click`` (is_click = 1), ``long_view``.
- ``lfm1b_item``: LFM-1b item level, ``track`` or ``artist``.
- ``csv_user_column``, ``csv_item_column``, ``csv_time_column``, ``csv_delimiter``: column mapping of a
  headed CSV (also the column names of a Parquet source); ``time_unit``: ``s`` or ``ms`` for
  csv/parquet timestamps (MovieLens is always seconds).
- ``seed``, ``synthetic_scale``, ``synthetic_layout`` (``kuairand`` or ``lfm1b`` files), and the
  overrides ``synthetic_users``, ``synthetic_items``, ``synthetic_min_events``, ``synthetic_max_events``
  (0 = take the value from the scale preset).

``events`` (filters): ``min_events_per_user``, ``min_item_occurrences``, ``k_core`` (repeat both
filters until neither removes anything).

``splits``: ``mode`` (``global_time`` or ``leave_one_out``); for global_time the cut-offs are
``valid_start`` / ``test_start`` (ISO dates or datetimes, UTC) when given, else the
``valid_quantile`` / ``test_quantile`` of all event timestamps.
"""

from __future__ import annotations

from typing import Literal

import dagster as dg

Source = Literal["synthetic", "kuairand", "lfm1b", "movielens", "csv", "parquet"]


class RawEventsConfig(dg.Config):
    """Which raw files to ingest and how to read them."""

    source: Source = "synthetic"
    dataset: str = ""
    landing_dir: str = ""
    file_glob: str = ""
    kuairand_interactions: Literal["all", "click", "long_view"] = "all"
    lfm1b_item: Literal["track", "artist"] = "track"
    csv_user_column: str = "user_id"
    csv_item_column: str = "item_id"
    csv_time_column: str = "timestamp"
    csv_delimiter: str = ","
    time_unit: Literal["s", "ms"] = "s"
    seed: int = 0
    synthetic_scale: Literal["default", "tiny"] = "default"
    synthetic_layout: Literal["kuairand", "lfm1b"] = "kuairand"
    synthetic_users: int = 0
    synthetic_items: int = 0
    synthetic_min_events: int = 0
    synthetic_max_events: int = 0

    @property
    def dataset_name(self) -> str:
        return self.dataset or self.source


class EventsConfig(dg.Config):
    """Which users and items survive into the dense-id event table."""

    min_events_per_user: int = 5
    min_item_occurrences: int = 1
    k_core: bool = False


class SplitsConfig(dg.Config):
    """How events become train events and validation/test targets."""

    mode: Literal["global_time", "leave_one_out"] = "global_time"
    valid_start: str = ""
    test_start: str = ""
    valid_quantile: float = 0.9
    test_quantile: float = 0.95
