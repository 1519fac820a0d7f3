"""No event acknowledged by the service is lost when a rebuilt store is published while events keep arriving:
real stores written through the served link, and a real service over HTTP during a real user_states run."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import pytest
import uvicorn

from pipelines.data.resources import Warehouse
from pipelines.paths import ProjectPaths
from pipelines.resources import MlflowTracking
from pipelines.serving.assets import user_states
from pipelines.serving.publish import CarryOverReport, publish_version
from recmodels.serving.app import create_app
from recmodels.serving.build import build_folder
from recmodels.serving.bundle import STORE_FILE, Catalogue
from recmodels.serving.service import RecommendationService, ServedFolder
from recmodels.serving.store import StateStore, StoreRetired
from tests.serving import test_user_states_asset as asset_test
from tests.serving.conftest import NUM_ITEMS, item_raw, user_histories, write_model_files
from tests.serving.test_http import WRITE_TOKEN, bearer, free_port

RawEvent = tuple[str, str, int]  # (user, raw item, ts)
EVENTS_PER_USER = 25  # per request: a write transaction long enough for a publish to meet one in flight


def build_version(home: Path, name: str, catalogue: list[str], histories: tuple[list, list, list]) -> Path:
    """A recmamba folder ``name`` under the served link's versions; histories in raw item ids."""
    files = home / "build" / name
    model = write_model_files(files, "recmamba")
    items = Catalogue(catalogue, np.zeros(len(catalogue) + 1, np.int64))
    users, raw, stamps = histories
    dense = [np.array([items.dense_ids().get(item, 0) for item in history]) for history in raw]
    folder = home / "data" / "serving" / "handmade" / ".versions" / "recmamba" / name
    meta = {"model": "recmamba", "version": name, "dataset": "handmade", "split_fingerprint": name}
    build_folder(folder, model, files, items, users, dense, stamps, meta)
    return folder


def raw_histories() -> tuple[list[str], list[list[str]], list[np.ndarray]]:
    users, items, stamps = user_histories()
    return users, [[item_raw(int(i)) for i in history] for history in items], stamps


def journal_events(folder: Path) -> list[RawEvent]:
    """The folder's journal in raw item ids, in the order applied."""
    item_raw_ids = Catalogue.read(folder).item_raw
    store = StateStore(folder / STORE_FILE, np.float32)
    try:
        rows = store.connection.execute("SELECT user, item, ts FROM journal ORDER BY seq").fetchall()
    finally:
        store.close()
    return [(user, item_raw_ids[item - 1], ts) for user, item, ts in rows]


def first_version(home: Path) -> tuple[Path, Path]:
    """The served link and the folder it points at, with the items of the conftest catalogue."""
    link = home / "data" / "serving" / "handmade" / "recmamba"
    old = build_version(home, "v1", [item_raw(i) for i in range(1, NUM_ITEMS + 1)], raw_histories())
    link.symlink_to(old.relative_to(link.parent))
    return link, old


def test_carry_over_counts_each_event_it_does_not_apply_with_its_reason(project_home):
    link, old = first_version(project_home)
    service = RecommendationService(old)
    posted = [
        ("user-0", item_raw(1), 3000),  # the rebuilt history of user-0 reaches 3500: stale
        ("user-1", item_raw(2), 3000),  # the rebuilt history of user-1 ends with this very event: duplicate
        ("user-2", item_raw(50), 3000),  # the rebuilt catalogue has no item-50: unknown item
        ("user-3", item_raw(3), 3000),
        ("zoe", item_raw(4), 3000),  # a user the rebuilt split does not know
    ]
    assert service.post_events(posted).applied == 5
    users, items, stamps = raw_histories()
    items[0], stamps[0] = [*items[0], item_raw(7)], np.append(stamps[0], 3500)
    items[1], stamps[1] = [*items[1], item_raw(2)], np.append(stamps[1], 3000)
    catalogue = [item_raw(i) for i in range(NUM_ITEMS - 1, 0, -1)] + ["item-51"]  # other dense ids, no item-50
    new = build_version(project_home, "v2", catalogue, (users, items, stamps))

    report = publish_version(link, new, ProjectPaths.from_env().served_events("handmade"))

    expected = CarryOverReport(applied=2, stale=1, duplicates=1, unknown_items=1, new_users=1, under_lock=0)
    assert report == expected and report.read == len(posted)
    assert journal_events(new) == [("user-3", item_raw(3), 3000), ("zoe", item_raw(4), 3000)]
    assert link.resolve() == new.resolve()
    with pytest.raises(StoreRetired):
        service.post_events([("user-4", item_raw(5), 4000)])
    service.close()


@dataclass
class Writer:
    """Posts batches through the served link until stopped, keeping every acknowledged batch."""

    link: Path
    users: list[str]
    acknowledged: list[list[RawEvent]]
    stop: threading.Event

    def run(self) -> None:
        served = ServedFolder(self.link)
        batch = 0
        while not self.stop.is_set():
            events = [(user, item_raw(1 + (batch + u) % (NUM_ITEMS - 1)), 10_000 + batch) for u, user in
                      enumerate(self.users)]  # fmt: skip
            report = served.post_events(events)
            assert report.applied == len(events), report
            self.acknowledged.append(events)
            batch += 1
        served.get().close()


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_events_written_while_a_rebuild_is_published_are_all_in_the_new_store(project_home):
    link, old = first_version(project_home)
    catalogue = [item_raw(i) for i in range(NUM_ITEMS, 0, -1)]  # the same items under other dense ids
    new = build_version(project_home, "v2", catalogue, raw_histories())
    stop = threading.Event()
    writers = [Writer(link, [f"user-{3 * w + u}" for u in range(3)], [], stop) for w in range(2)]
    threads = [threading.Thread(target=writer.run) for writer in writers]
    for thread in threads:
        thread.start()

    def acknowledged() -> int:
        return sum(len(writer.acknowledged) for writer in writers)

    wait_for(lambda: acknowledged() >= 20)
    report = publish_version(link, new, ProjectPaths.from_env().served_events("handmade"))
    published_at = acknowledged()
    wait_for(lambda: acknowledged() >= published_at + 20)
    stop.set()
    for thread in threads:
        thread.join()

    posted = [event for writer in writers for batch in writer.acknowledged for event in batch]
    carried, applied_after = journal_events(old), journal_events(new)
    assert Counter(applied_after) == Counter(posted)  # each acknowledged event exactly once, nothing else
    assert report.read == report.applied == len(carried)  # none stale, duplicate or unknown to the new catalogue
    assert 0 < len(carried) < len(posted)  # both stores acknowledged some


def start_service(link: Path) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    app = create_app(link, write_token=WRITE_TOKEN)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    return server, thread, f"http://127.0.0.1:{port}"


@dataclass
class Post:
    events: list[RawEvent]
    sent: float
    answered: float


@contextlib.contextmanager
def posting(base_url: str, clients: list[list[str]], pause: float) -> Iterator[list[Post]]:
    """A thread per client posting, until the block ends, requests of ``EVENTS_PER_USER`` events for each of its
    own users, at a later time each request."""
    posts: list[Post] = []
    stop = threading.Event()

    def run(users: list[str]) -> None:
        with httpx.Client(base_url=base_url, headers=bearer(WRITE_TOKEN), timeout=60) as client:
            n = 0
            while not stop.is_set():
                events = [(user, asset_test.item_raw(1 + (n + u + e) % asset_test.NUM_ITEMS), 20_000 + n)
                          for u, user in enumerate(users) for e in range(EVENTS_PER_USER)]  # fmt: skip
                sent = time.monotonic()
                body = {"events": [{"user": u, "item": i, "timestamp": t} for u, i, t in events]}
                response = client.post("/events", json=body)
                assert response.status_code == 200, response.text
                assert response.json()["applied"] == len(events), response.json()
                posts.append(Post(events, sent, time.monotonic()))
                n += 1
                time.sleep(pause)  # leave the materialization its share of the CPU

    threads = [threading.Thread(target=run, args=(users,)) for users in clients]
    for thread in threads:
        thread.start()
    try:
        yield posts
    finally:
        stop.set()
        for thread in threads:
            thread.join()


@pytest.fixture
def one_served_model(project_home: Path):
    paths = ProjectPaths.from_env()
    paths.mlflow.mkdir(parents=True)
    export = asset_test.make_export(paths)
    asset_test.register(export, paths, "recmamba")
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization("splits", metadata={"export_path": str(export)}))
    yield instance, paths.serving / asset_test.DATASET / "recmamba"
    instance.dispose()


def materialize_recmamba(instance: dg.DagsterInstance) -> dict:
    """A user_states run whose journal policy alone would keep one row."""
    resources = {"mlflow_tracking": MlflowTracking(), "warehouse": Warehouse()}
    config = {"models": ["recmamba"], "journal_max_rows": 1, "journal_max_age_days": 1}
    result = dg.materialize([user_states], instance=instance, resources=resources,
                            run_config={"ops": {"user_states": {"config": config}}})  # fmt: skip
    metadata = result.asset_materializations_for_node("user_states")[0].metadata
    return {key: value.value for key, value in metadata.items()}


def test_no_event_acknowledged_over_http_is_lost_while_user_states_rebuilds(one_served_model):
    instance, link = one_served_model
    materialize_recmamba(instance)
    old = link.resolve()
    server, thread, base_url = start_service(link)
    try:
        with posting(base_url, [["ann", "dee"], ["bob", "eve"], ["cy"], ["fay"]], pause=0.001) as posts:
            wait_for(lambda: len(posts) >= 5)
            started = time.monotonic()
            metadata = materialize_recmamba(instance)
            finished = time.monotonic()
            wait_for(lambda: len(posts) >= len([p for p in posts if p.sent < finished]) + 5)
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    new = link.resolve()
    assert new != old
    posted = [event for post in posts for event in post.events]
    carried, applied_after = journal_events(old), journal_events(new)
    assert Counter(applied_after) == Counter(posted)  # each event acknowledged with 200 exactly once
    assert metadata["recmamba/events_carried_over"] == len(carried)
    assert (metadata["recmamba/carried_stale"], metadata["recmamba/carried_duplicates"],
            metadata["recmamba/carried_unknown_items"]) == (0, 0, 0)  # fmt: skip
    during = [post for post in posts if started <= post.sent and post.answered <= finished]
    assert during and set(during[0].events) <= set(carried)  # posted while it ran, applied to the old store
    assert len(carried) < len(posted)  # and the new store acknowledged the later ones
    assert metadata["recmamba/journal_deleted"] == 0  # every row is newer than the split, whatever the policy
    assert metadata["recmamba/journal_kept_for_rebuild"] >= len(carried) - 1
    assert metadata["split_horizon_ms"] == 1069
