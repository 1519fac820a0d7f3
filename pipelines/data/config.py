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
- ``dataset``: the export's name (``data/exports/<dataset>/``); empty = the source name. 1-64 letters,
  digits, ``_``, ``.`` or ``-``, starting with a letter or digit (it becomes a folder and file name).
- ``landing_dir``: folder of raw files, relative to ``RECMAMBA_HOME/data/landing`` (an absolute path must
  lie inside it too, after following symlinks); empty = ``RECMAMBA_HOME/data/landing/<source>``.
- ``file_glob``: which files in it, a relative pattern without ``..``; empty = the source's usual patterns
  (``*.csv`` and ``*.csv.gz``, ``*.txt``, ...). Files whose name starts with ``.`` or ends in ``.part`` or
  ``.tmp`` are never read: a writer publishes a file by writing ``<name>.part`` and renaming it. A file that
  changes while it is read fails the run; a symlink to a file outside the landing folder is refused.
- ``kuairand_interactions``: which exposures count: ``all``, ``click`` (is_click = 1), ``long_view``.
- ``lfm1b_item``: LFM-1b item level, ``track`` or ``artist``.
- ``csv_user_column``, ``csv_item_column``, ``csv_time_column``: column mapping of a csv or Parquet source
  (three different columns); ``csv_delimiter``: one character. Text ids are trimmed of leading and trailing
  spaces; an id with a control character (NUL, tab, ...) is an error.
- ``csv_header``: whether csv files start with a header line; without one, ``csv_columns`` names the
  file's columns by position (e.g. ``[user, item, category, behavior, ts]``) and the mapping refers to them.
- ``filter_column``, ``filter_values``: csv/Parquet rows are kept only where this column's value is one of
  ``filter_values`` (e.g. ``behavior`` in ``[buy]``); empty = keep every row.
- ``time_unit``: ``s``, ``ms``, ``us`` or ``ns`` for numeric csv/Parquet timestamps (MovieLens is always
  seconds); a Parquet timestamp or date column is read as it is.
- ``min_timestamp``, ``max_timestamp``: the plausible range (ISO dates or datetimes, UTC); a timestamp
  outside it fails the run naming file, line and column, usually a wrong ``time_unit``. Empty
  ``max_timestamp`` = one day after now.
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

import re
from typing import Literal

import dagster as dg
from pydantic import Field, field_validator, model_validator

from pipelines.data.sources.timestamps import utc_ms
from pipelines.paths import check_dataset_name

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
    csv_header: bool = True
    csv_columns: list[str] = Field(default_factory=list)
    filter_column: str = ""
    filter_values: list[str] = Field(default_factory=list)
    time_unit: Literal["s", "ms", "us", "ns"] = "s"
    min_timestamp: str = "1995-01-01"
    max_timestamp: str = ""
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

    @field_validator("dataset")
    @classmethod
    def _dataset_is_a_plain_name(cls, value: str) -> str:
        """The name becomes folder and file names: ``../x`` or ``/tmp/x`` would write outside the project."""
        return check_dataset_name(value) if value else value

    @field_validator("file_glob")
    @classmethod
    def _glob_stays_in_landing_dir(cls, value: str) -> str:
        if value.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", value) or ".." in re.split(r"[/\\]", value):
            raise ValueError(f"file_glob {value[:80]!r} must be a relative pattern without '..' (e.g. '*.csv')")
        return value

    @field_validator("csv_delimiter")
    @classmethod
    def _delimiter_is_one_character(cls, value: str) -> str:
        if len(value) != 1 or value in {'"', "\n", "\r"}:
            raise ValueError(f"csv_delimiter {value[:80]!r} must be one character other than a quote or newline")
        return value

    @field_validator("min_timestamp", "max_timestamp")
    @classmethod
    def _is_an_iso_time(cls, value: str) -> str:
        if value:
            utc_ms(value)
        return value

    @model_validator(mode="after")
    def _mapping_names_three_columns(self) -> RawEventsConfig:
        mapping = self.column_mapping_fields()
        for column in dict.fromkeys(mapping.values()):
            same = [field for field, value in mapping.items() if value == column]
            if len(same) > 1:
                raise ValueError(f"{' and '.join(same)} are both {column[:80]!r}: map three different columns")
        return self

    @model_validator(mode="after")
    def _headerless_columns_are_named(self) -> RawEventsConfig:
        if self.csv_header or self.source != "csv":
            if self.csv_columns:
                raise ValueError("csv_columns names the columns of headerless csv files: set csv_header: false")
            return self
        if not self.csv_columns:
            raise ValueError("csv_header is false: list the file's columns in order in csv_columns")
        repeated = next((c for i, c in enumerate(self.csv_columns) if c in self.csv_columns[:i]), None)
        if repeated is not None:
            raise ValueError(f"csv_columns names {repeated[:80]!r} twice")
        for field, column in {**self.column_mapping_fields(), "filter_column": self.filter_column}.items():
            if column and column not in self.csv_columns:
                raise ValueError(f"{field} {column[:80]!r} is not one of csv_columns {str(self.csv_columns)[:80]}")
        return self

    @model_validator(mode="after")
    def _filter_is_complete(self) -> RawEventsConfig:
        if bool(self.filter_column) != bool(self.filter_values):
            raise ValueError("filter_column and filter_values go together: the column and the values to keep")
        if self.filter_column and self.source not in {"csv", "parquet"}:
            raise ValueError(f"filter_column applies to csv and parquet sources, not {self.source}")
        return self

    def column_mapping_fields(self) -> dict[str, str]:
        return {
            "csv_user_column": self.csv_user_column,
            "csv_item_column": self.csv_item_column,
            "csv_time_column": self.csv_time_column,
        }


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
