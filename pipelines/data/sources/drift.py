"""The drifting synthetic stream: a log that ages, written one landing file per day.

The static synthetic default has nothing to age against; this mode does. Every day each user's interest
over item clusters moves by ``drift_rate`` towards a fresh random mix, ``new_items_per_day`` items are born
and every item's popularity fades with its age (``fade_days``), so a model trained once on the first weeks
keeps recommending items nobody consumes any more and has never seen the new ones. Within a session a user
mostly stays in one cluster and often follows an item with its successor in the cluster (a sequential
pattern a model can learn), and now and then re-consumes one of their recent items.

Files use the synthetic source's layout (KuaiRand CSV or LFM-1b TSV, the real parsers), named by their
day; each is written as ``<name>.part`` and renamed, the landing convention, so a sensor never reads half
of one. Generation is deterministic per seed: landing days 1..k now and k+1..n later gives the same files
as landing all n at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from pipelines.data.sources import kuairand
from pipelines.data.sources.synthetic import START_MS, kuairand_day_table, lfm1b_table

DAY_MS = 86_400_000
DRIFT_FOLDER = "synthetic_drift"  # the landing sub-folder the stream is written to


@dataclass(frozen=True)
class DriftSpec:
    """Sizes and drift of the stream; ``SCALES`` fill every field."""

    users: int
    items: int  # born before the first day
    days: int
    events_per_day: float  # per user, Poisson mean
    clusters: int
    new_items_per_day: int
    drift_rate: float  # share of a user's interest replaced each day
    fade_days: float  # an item's popularity falls by e every fade_days of age
    successor_share: float = 0.5  # next item = the previous item's successor in its cluster
    repeat_share: float = 0.1  # re-consume one of the user's last 30 items
    seed: int = 0


SCALES = {
    "default": DriftSpec(100, 2000, 60, 60.0, clusters=20, new_items_per_day=40, drift_rate=0.15, fade_days=10.0),
    "tiny": DriftSpec(20, 200, 6, 15.0, clusters=5, new_items_per_day=10, drift_rate=0.2, fade_days=3.0),
}


def day_key(day: int) -> str:
    """``YYYY-MM-DD`` of day ``day`` counted from ``START_MS`` (the daily partition key)."""
    return datetime.fromtimestamp((START_MS + day * DAY_MS) / 1000, UTC).strftime("%Y-%m-%d")


def generate(spec: DriftSpec) -> pa.Table:
    """All events (user, item as 0-based raw ids, ``time_ms``) of every day, in day, user, time order."""
    rng = np.random.default_rng(spec.seed)
    total_items = spec.items + spec.new_items_per_day * spec.days
    birth = np.concatenate([-rng.integers(0, 3 * int(spec.fade_days) + 1, spec.items),
                            np.repeat(np.arange(spec.days), spec.new_items_per_day)])  # fmt: skip
    cluster = rng.integers(0, spec.clusters, total_items)
    base = rng.lognormal(0.0, 1.0, total_items)
    successor = _successors(cluster, rng)
    interest = rng.dirichlet(np.full(spec.clusters, 0.3), spec.users)
    recent: list[list[int]] = [[] for _ in range(spec.users)]
    users, items, times = [], [], []
    for day in range(spec.days):
        alive = birth <= day
        weight = np.where(alive, base * np.exp(-(day - np.maximum(birth, 0)) / spec.fade_days), 0.0)
        interest = (1 - spec.drift_rate) * interest + spec.drift_rate * rng.dirichlet(
            np.full(spec.clusters, 0.3), spec.users
        )
        pools = _cluster_pools(cluster, weight, spec.clusters)
        for user in range(spec.users):
            count = rng.poisson(spec.events_per_day)
            if count == 0:
                continue
            chosen = _session(spec, rng, interest[user], pools, weight, successor, recent[user], count)
            seconds = np.sort(rng.integers(0, 86_400, count))
            users.append(np.full(count, user, np.int64))
            items.append(np.asarray(chosen, np.int64))
            times.append(START_MS + day * DAY_MS + seconds * 1000)
    return pa.table({"user_id": np.concatenate(users), "video_id": np.concatenate(items),
                     "time_ms": np.concatenate(times)})  # fmt: skip


def _successors(cluster: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each item's successor: the next item of its cluster in a fixed random order (cyclic)."""
    successor = np.arange(len(cluster))
    for c in np.unique(cluster):
        members = rng.permutation(np.flatnonzero(cluster == c))
        successor[members] = np.roll(members, -1)
    return successor


def _cluster_pools(cluster: np.ndarray, weight: np.ndarray, clusters: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per cluster, its living items and their cumulative popularity (the whole catalogue if none lives)."""
    pools = []
    for c in range(clusters):
        members = np.flatnonzero((cluster == c) & (weight > 0))
        if len(members) == 0:
            members = np.flatnonzero(weight > 0)
        cdf = np.cumsum(weight[members])
        pools.append((members, cdf / cdf[-1]))
    return pools


def _session(spec, rng, interest, pools, weight, successor, recent: list[int], count: int) -> list[int]:
    """``count`` items of one user-day: sticky cluster, successor chains, repeats, popular-and-fresh picks."""
    chosen: list[int] = []
    cumulative = np.cumsum(interest) / interest.sum()
    current = min(int(np.searchsorted(cumulative, rng.random())), len(pools) - 1)
    for _ in range(count):
        draw = rng.random()
        if chosen and draw < spec.successor_share and weight[successor[chosen[-1]]] > 0:
            item = int(successor[chosen[-1]])
        elif recent and draw < spec.successor_share + spec.repeat_share:
            item = recent[int(rng.integers(len(recent)))]
        else:
            if rng.random() < 0.2:
                current = min(int(np.searchsorted(cumulative, rng.random())), len(pools) - 1)
            members, cdf = pools[current]
            item = int(members[min(np.searchsorted(cdf, rng.random()), len(members) - 1)])
        chosen.append(item)
        recent.append(item)
        del recent[:-30]
    return chosen


def day_file_name(day: int, layout: str) -> str:
    date = day_key(day).replace("-", "")
    return f"log_synthetic_{date}.csv" if layout == "kuairand" else f"LFM-1b_LEs_{date}.txt"


def land_days(events: pa.Table, folder: Path, layout: str, days: range, seed: int = 0) -> list[Path]:
    """Publish the files of ``days`` into ``folder`` (``.part``, then rename); returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    day_of = (events["time_ms"].to_numpy() - START_MS) // DAY_MS
    written = []
    for day in days:
        rows = events.filter(pa.array(day_of == day))
        if rows.num_rows == 0:
            continue
        if layout == "kuairand":
            table = kuairand_day_table(rows, np.random.default_rng([seed, day]))
        else:
            table = lfm1b_table(rows)
        path = folder / day_file_name(day, layout)
        part = path.with_name(path.name + ".part")
        with part.open("wb") as f:
            if layout == "kuairand":
                f.write((",".join(kuairand.COLUMNS) + "\n").encode())
            options = pacsv.WriteOptions(include_header=False, delimiter="," if layout == "kuairand" else "\t")
            pacsv.write_csv(table, f, options)
        part.rename(path)
        written.append(path)
    return written
