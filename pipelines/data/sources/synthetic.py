"""The embedded synthetic lifelong dataset, deterministic per seed, written as raw landing files.

Each user gets a long history (2k-5k events by default) with: Zipf item popularity inside item clusters;
a slowly drifting interest over clusters; sessions (a sticky cluster, seconds between events, hours
between sessions, equal timestamps now and then); and long-range re-consumption: a share of events
repeat one of the user's own "favourite" items last consumed 500-2000 events earlier. The favourites
are uniform over the catalogue, so neither popularity nor the last 200 events reveal them, while the
whole history does: a model that sees it can beat one that sees the last 200 events. Users join in the
period's first quarter and stay active to its last day, at their own rate, as the subscribers of a service
do; so every user has events in the validation and test windows of a global time split.

Files are written in the KuaiRand raw layout (one CSV per day) or the LFM-1b layout (one TSV per day),
so the real parsers run end to end. Scales: ``default`` (100 users, 3000 items, 2k-5k events each;
about 0.35 M events over 200 days) and ``tiny`` (30 users, 300 items, 300-600 events each, gaps 60-250, over
60 days, for smoke runs).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from pipelines.data.sources import kuairand, lfm1b

GENERATOR_VERSION = 2
START_MS = 1_640_995_200_000  # 2022-01-01 UTC
MANIFEST = "_synthetic.json"


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and behaviour of the generator; the ``scale`` presets below fill every field."""

    users: int
    items: int
    min_events: int
    max_events: int
    clusters: int
    favourites: int  # per user, re-consumed at long range
    repeat_share: float  # share of events that re-consume a favourite
    gap_min: int  # a favourite comes back between gap_min and gap_max events after its last use
    gap_max: int
    period_days: int  # every user is active until the period's last day (so every user has validation and test events)
    seed: int = 0


SCALES = {
    "default": SyntheticSpec(100, 3000, 2000, 5000, clusters=30, favourites=120, repeat_share=0.2,
                             gap_min=500, gap_max=2000, period_days=200),
    "tiny": SyntheticSpec(30, 300, 300, 600, clusters=10, favourites=20, repeat_share=0.2,
                          gap_min=60, gap_max=250, period_days=60),
}  # fmt: skip


def spec_for(scale: str, seed: int, users: int = 0, items: int = 0, min_events: int = 0, max_events: int = 0):
    """The preset of ``scale`` with the non-zero overrides applied."""
    overrides = {"users": users, "items": items, "min_events": min_events, "max_events": max_events}
    return dataclasses.replace(SCALES[scale], seed=seed, **{k: v for k, v in overrides.items() if v})


@numba.njit(cache=True)
def _simulate(seed, lengths, members, zipf_cdf, favourites, repeat_share, gap_min, gap_max):
    """Item ids and timestamps (ms) of all users, concatenated in user order."""
    np.random.seed(seed)
    n_clusters, n_items = members.shape[0], members.size
    total = lengths.sum()
    items = np.empty(total, np.int32)
    times = np.empty(total, np.int64)
    fav_index = np.full(n_items, -1, np.int64)
    pos = 0
    for u in range(lengths.shape[0]):
        m = favourites.shape[1]
        for j in range(m):
            fav_index[favourites[u, j]] = j
        last = np.full(m, -(10**9), np.int64)
        interest = np.random.dirichlet(np.full(n_clusters, 0.3))
        seconds = START_MS // 1000 + np.random.randint(0, 60 * 86400)
        session_cluster = 0
        for t in range(lengths[u]):
            if t > 0 and t % 100 == 0:  # interests drift slowly
                interest = 0.9 * interest + 0.1 * np.random.dirichlet(np.full(n_clusters, 0.3))
            if t == 0 or np.random.random() < 1.0 / 15.0:  # a new session
                seconds += int(np.random.exponential(20 * 3600.0)) + 60
                session_cluster = np.searchsorted(np.cumsum(interest), np.random.random() * interest.sum())
            else:
                seconds += int(np.random.exponential(45.0))
            item = -1
            if np.random.random() < repeat_share:
                item = _pick_favourite(t, last, favourites[u], gap_min, gap_max)
            if item < 0:
                c = session_cluster
                if np.random.random() < 0.3:
                    c = np.searchsorted(np.cumsum(interest), np.random.random() * interest.sum())
                c = min(c, n_clusters - 1)
                k = min(np.searchsorted(zipf_cdf, np.random.random()), zipf_cdf.shape[0] - 1)
                item = members[c, k]
            j = fav_index[item]
            if j >= 0:
                last[j] = t
            items[pos] = item
            times[pos] = seconds * 1000
            pos += 1
        for j in range(m):
            fav_index[favourites[u, j]] = -1
    return items, times


@numba.njit(cache=True)
def _pick_favourite(t, last, favs, gap_min, gap_max):
    """A favourite last used gap_min..gap_max events ago (the longer ago, the likelier), else an unused one."""
    weight_sum = 0.0
    unused = 0
    for j in range(last.shape[0]):
        gap = t - last[j]
        if gap_min <= gap <= gap_max:
            weight_sum += (gap - gap_min + 1.0) ** 2
        elif last[j] < -(10**8):
            unused += 1
    if weight_sum > 0:
        target = np.random.random() * weight_sum
        for j in range(last.shape[0]):
            gap = t - last[j]
            if gap_min <= gap <= gap_max:
                target -= (gap - gap_min + 1.0) ** 2
                if target <= 0:
                    return favs[j]
    if unused > 0:
        k = np.random.randint(0, unused)
        for j in range(last.shape[0]):
            if last[j] < -(10**8):
                if k == 0:
                    return favs[j]
                k -= 1
    return -1


def generate(spec: SyntheticSpec) -> pa.Table:
    """All events as a table of user, item (0-based raw ids) and ``time_ms``, in user then time order."""
    rng = np.random.default_rng(spec.seed)
    per_cluster = max(1, spec.items // spec.clusters)
    members = rng.permutation(spec.clusters * per_cluster).reshape(spec.clusters, per_cluster)
    ranks = np.arange(1, per_cluster + 1, dtype=np.float64)
    zipf_cdf = np.cumsum(ranks**-1.1) / np.sum(ranks**-1.1)
    n_fav = min(spec.favourites, members.size)
    favourites = np.stack([rng.choice(members.size, n_fav, replace=False) for _ in range(spec.users)])
    lengths = rng.integers(spec.min_events, spec.max_events + 1, size=spec.users)
    items, times = _simulate(
        int(rng.integers(2**31)),
        lengths,
        members,
        zipf_cdf,
        favourites,
        spec.repeat_share,
        spec.gap_min,
        spec.gap_max,
    )
    times = _active_until_the_end(times, lengths, spec.period_days, rng)
    users = np.repeat(np.arange(spec.users, dtype=np.int64), lengths)
    return pa.table({"user_id": users, "video_id": items.astype(np.int64), "time_ms": times})


def _active_until_the_end(times: np.ndarray, lengths: np.ndarray, period_days: int, rng: np.random.Generator):
    """Each user's times stretched (or squeezed) onto [a start in the period's first quarter, the period's last
    day], whole seconds, order and equal times kept: users differ in their rate, not in when they stop, so the
    global time split's validation and test windows hold every user, not only those with the longest histories."""
    day_ms, period_ms = 86_400_000, period_days * 86_400_000
    ends = np.cumsum(lengths)
    first, last = times[ends - lengths], times[ends - 1]
    start = START_MS + rng.integers(0, period_ms // 4, size=lengths.size)
    finish = START_MS + period_ms - rng.integers(0, day_ms, size=lengths.size)
    scale = (finish - start) / np.maximum(last - first, 1)
    offset = (times - np.repeat(first, lengths)) * np.repeat(scale, lengths)
    return (np.repeat(start, lengths) + offset.astype(np.int64)) // 1000 * 1000


def kuairand_day_table(events: pa.Table, rng: np.random.Generator) -> pa.Table:
    """Add the remaining KuaiRand columns with plausible values."""
    n = events.num_rows
    time_ms = events["time_ms"].to_numpy()
    day = time_ms // 86_400_000
    dates = {d: int(datetime.fromtimestamp(d * 86400, UTC).strftime("%Y%m%d")) for d in np.unique(day)}
    flags = {name: (rng.random(n) < p).astype(np.int8) for name, p in [
        ("is_click", 0.8), ("is_like", 0.05), ("is_follow", 0.005), ("is_comment", 0.01),
        ("is_forward", 0.01), ("is_hate", 0.001), ("long_view", 0.4)]}  # fmt: skip
    duration = 5_000 + events["video_id"].to_numpy() * 37 % 120_000
    columns = {
        "user_id": events["user_id"],
        "video_id": events["video_id"],
        "date": np.vectorize(dates.get, otypes=[np.int64])(day),
        "hourmin": ((time_ms + 1_800_000) // 3_600_000 % 24) * 100,
        "time_ms": events["time_ms"],
        **{k: flags[k] for k in ["is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate"]},
        "long_view": flags["long_view"],
        "play_time_ms": (duration * rng.random(n)).astype(np.int64),
        "duration_ms": duration,
        "profile_stay_time": np.zeros(n, np.int64),
        "comment_stay_time": np.zeros(n, np.int64),
        "is_profile_enter": (rng.random(n) < 0.02).astype(np.int8),
        "is_rand": np.zeros(n, np.int8),
        "tab": rng.integers(0, 6, n),
    }
    assert list(columns) == kuairand.COLUMNS
    return pa.table(columns)


def lfm1b_table(events: pa.Table) -> pa.Table:
    """LFM-1b columns: ten tracks per artist, two per album, timestamps in seconds."""
    track = events["video_id"].to_numpy()
    return pa.table(
        {
            "user-id": events["user_id"],
            "artist-id": track // 10,
            "album-id": track // 2,
            "track-id": track,
            "timestamp": events["time_ms"].to_numpy() // 1000,
        }
    )


def write_day_files(events: pa.Table, folder: Path, layout: str, seed: int) -> int:
    """One file per UTC day, rows in user then time order within a day; returns the number of files."""
    day = pa.array(events["time_ms"].to_numpy() // 86_400_000)
    events = events.append_column("day", day).sort_by([("day", "ascending"), ("user_id", "ascending")])
    days = events["day"].to_numpy()
    events = events.drop_columns("day")
    table = kuairand_day_table(events, np.random.default_rng(seed)) if layout == "kuairand" else lfm1b_table(events)
    bounds = np.flatnonzero(np.diff(days)) + 1
    starts, ends = np.concatenate([[0], bounds]), np.concatenate([bounds, [len(days)]])
    options = pacsv.WriteOptions(include_header=False, delimiter="," if layout == "kuairand" else "\t")
    for start, end in zip(starts, ends, strict=True):
        date = datetime.fromtimestamp(int(days[start]) * 86400, UTC).strftime("%Y%m%d")
        name = f"log_synthetic_{date}.csv" if layout == "kuairand" else f"LFM-1b_LEs_{date}.txt"
        with (folder / name).open("wb") as f:
            if layout == "kuairand":
                f.write((",".join(kuairand.COLUMNS) + "\n").encode())
            pacsv.write_csv(table.slice(start, end - start), f, options)
    return len(starts)


def ensure_landing(spec: SyntheticSpec, layout: str, folder: Path) -> bool:
    """Write the synthetic files unless ``folder`` already holds this exact spec; True if (re)written.

    The folder is replaced as a whole (temp folder, then rename), so readers never see half of it.
    """
    manifest = {"version": GENERATOR_VERSION, "layout": layout, **dataclasses.asdict(spec)}
    manifest_path = folder / MANIFEST
    if manifest_path.exists() and json.loads(manifest_path.read_text()) == manifest:
        return False
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    write_day_files(generate(spec), tmp, layout, spec.seed)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex}"
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return True


DEFAULT_GLOBS = {"kuairand": kuairand.DEFAULT_GLOBS, "lfm1b": lfm1b.DEFAULT_GLOBS}
