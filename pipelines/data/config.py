"""Run configuration of the data assets: one ``dagster.Config`` per asset, editable in the launchpad.

A YAML run config for ``dagster asset materialize -c run.yaml`` looks like::

    ops:
      raw_events:
        config:
          source: synthetic          # synthetic | kuairand | lfm1b | movielens | recbole | csv | parquet
          synthetic_scale: tiny      # default (~100 users x 2k-5k events) | tiny (30 users x 300-600)
          seed: 0
      events:
        config: {min_events_per_user: 5, min_item_occurrences: 1, k_core: false}
      splits:
        config: {mode: global_time, valid_quantile: 0.9, test_quantile: 0.95, targets: default}

Every field has a default, so no config at all materializes the synthetic default.

Every field's meaning is its ``description`` (shown in the launchpad next to the field).
"""

from __future__ import annotations

import re
from typing import Literal

import dagster as dg
from pydantic import Field, field_validator, model_validator

from pipelines.data.sources.timestamps import utc_ms
from pipelines.paths import check_dataset_name

Source = Literal["synthetic", "kuairand", "lfm1b", "movielens", "recbole", "csv", "parquet"]


class RawEventsConfig(dg.Config):
    """Which raw files to ingest and how to read them."""

    source: Source = Field("synthetic", description="Which parser reads the landing folder.")
    dataset: str = Field(
        "",
        description="The dataset's name: its warehouse file and export folder; empty = the source name. 1-64 "
        "letters, digits, '_', '.' or '-', starting with a letter or digit.",
    )
    landing_dir: str = Field(
        "",
        description="Folder of raw files, relative to RECMAMBA_HOME/data/landing (an absolute path must lie "
        "inside it too); empty = data/landing/<source>.",
    )
    file_glob: str = Field(
        "",
        description="Which files of the folder, a relative pattern without '..'; empty = the source's usual "
        "patterns. Names starting with '.' or ending in .part/.tmp are never read (publish by rename).",
    )
    kuairand_interactions: Literal["all", "click", "long_view"] = Field(
        "all", description="KuaiRand: which exposures count (click: is_click = 1)."
    )
    lfm1b_item: Literal["track", "artist"] = Field("track", description="LFM-1b: the item is a track or an artist.")
    csv_user_column: str = Field("user_id", description="csv/Parquet: the user id column (ids are trimmed).")
    csv_item_column: str = Field("item_id", description="csv/Parquet: the item id column.")
    csv_time_column: str = Field("timestamp", description="csv/Parquet: the timestamp column (see time_unit).")
    csv_delimiter: str = Field(",", description="csv: the one-character field delimiter.")
    csv_header: bool = Field(True, description="csv: files start with a header line (else name them in csv_columns).")
    csv_columns: list[str] = Field(
        default_factory=list,
        description="csv without a header: the file's column names in order, e.g. [user, item, category, ts].",
    )
    filter_column: str = Field(
        "", description="csv/Parquet: keep only rows whose value in this column is one of filter_values."
    )
    filter_values: list[str] = Field(default_factory=list, description="The values of filter_column to keep.")
    time_unit: Literal["s", "ms", "us", "ns"] = Field(
        "s", description="Unit of numeric csv/Parquet timestamps (Parquet timestamp/date columns are read as such)."
    )
    min_timestamp: str = Field(
        "1995-01-01",
        description="Earliest plausible timestamp (ISO date or datetime, UTC); an earlier one fails the run "
        "naming file, line and column (usually a wrong time_unit).",
    )
    max_timestamp: str = Field("", description="Latest plausible timestamp (ISO, UTC); empty = one day after now.")
    seed: int = Field(0, description="Synthetic source: the generator's seed.")
    synthetic_scale: Literal["default", "tiny"] = Field(
        "default", description="Synthetic source: default (100 users, 2k-5k events each) or tiny (30 x 300-600)."
    )
    synthetic_layout: Literal["kuairand", "lfm1b"] = Field(
        "kuairand", description="Synthetic source: the raw file layout it writes (and the real parser reads)."
    )
    synthetic_users: int = Field(0, ge=0, description="Synthetic source: users; 0 = the scale's preset.")
    synthetic_items: int = Field(0, ge=0, description="Synthetic source: items; 0 = the scale's preset.")
    synthetic_min_events: int = Field(0, ge=0, description="Synthetic source: shortest history; 0 = preset.")
    synthetic_max_events: int = Field(0, ge=0, description="Synthetic source: longest history; 0 = preset.")

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

    min_events_per_user: int = Field(5, description="Users with fewer events are dropped.")
    min_item_occurrences: int = Field(1, description="Items with fewer events are dropped.")
    k_core: bool = Field(False, description="Repeat both filters until neither removes anything.")


SplitMode = Literal["global_time", "leave_one_out"]
TargetRule = Literal["all", "first_per_user", "last_per_user", "sample_per_user"]
# Dagster config holds neither an optional Literal nor a union of them: "default" = the mode's default
TargetChoice = Literal["default", "all", "first_per_user", "last_per_user", "sample_per_user"]
# ARCHITECTURE.md, "Which events are targets": bounded cost at any size for global_time; leave-one-out's
# targets are each user's last events by definition.
DEFAULT_TARGETS: dict[str, TargetRule] = {"global_time": "sample_per_user", "leave_one_out": "last_per_user"}


class SplitsConfig(dg.Config):
    """How events become train events, validation/test targets and context."""

    mode: SplitMode = Field(
        "global_time",
        description="global_time: events after a cut-off are validation/test targets or context (no future "
        "leakage); leave_one_out: each user's last two events.",
    )
    valid_start: str = Field("", description="global_time: validation cut-off (ISO, UTC); empty = valid_quantile.")
    test_start: str = Field("", description="global_time: test cut-off (ISO, UTC); empty = test_quantile.")
    valid_quantile: float = Field(0.9, description="global_time: validation cut-off as a quantile of event times.")
    test_quantile: float = Field(0.95, description="global_time: test cut-off as a quantile of event times.")
    targets: TargetChoice = Field(
        "default",
        description="Which events of each evaluation window (validation, test) are a user's targets; the rest "
        "are context (history only). all | first_per_user | last_per_user | sample_per_user (up to "
        "targets_per_user drawn at random); default = the mode's default (global_time: sample_per_user, "
        "leave_one_out: last_per_user, its only rule).",
    )
    targets_per_user: int = Field(
        10, ge=1, description="sample_per_user: at most this many targets per user and window."
    )
    targets_seed: int = Field(0, description="sample_per_user: the seed of the draw (same seed, same targets).")

    @property
    def target_rule(self) -> TargetRule:
        """``targets`` with the mode's default filled in: the one place the default is resolved."""
        return DEFAULT_TARGETS[self.mode] if self.targets == "default" else self.targets

    @model_validator(mode="after")
    def _leave_one_out_targets_are_the_last_events(self) -> SplitsConfig:
        if self.mode == "leave_one_out" and self.target_rule != "last_per_user":
            raise ValueError(
                f"targets {self.targets!r} does not apply to mode leave_one_out, whose targets are each user's "
                "last (test) and second-to-last (validation) event: leave targets at default (or last_per_user), or "
                "use mode global_time"
            )
        return self
