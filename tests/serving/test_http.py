"""The recommendation service over real HTTP: uvicorn on a free port, httpx requests, real stores."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import uvicorn

from recmodels.serving.app import create_app
from recmodels.serving.bundle import STORE_FILE, load_model
from recmodels.serving.engines import engine_for
from recmodels.serving.store import StateStore
from tests.serving.conftest import item_raw, user_histories
from tests.serving.test_store import replay


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serve(served_folder: Callable[[str], Path]) -> Iterator[Callable[[str], tuple[httpx.Client, Path]]]:
    """``start(model)``: a uvicorn server on a free port for a freshly built folder, and a client for it."""
    servers: list[tuple[uvicorn.Server, threading.Thread, httpx.Client]] = []

    def start(name: str) -> tuple[httpx.Client, Path]:
        folder = served_folder(name)
        link = folder.parent / "current"
        link.symlink_to(folder.name)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(link), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        servers.append((server, thread, client))
        return client, folder

    yield start
    for server, thread, client in servers:
        client.close()
        server.should_exit = True
        thread.join(timeout=10)


def test_health_names_model_and_version(serve):
    client, _ = serve("recmamba")
    health = client.get("/health").json()
    assert (health["status"], health["model"], health["version"], health["users"]) == ("ok", "recmamba", "3", 6)


def test_unknown_user_gets_popular_items_flagged_as_fallback(serve):
    client, _ = serve("gru4rec")
    answer = client.get("/users/nobody/recommendations", params={"k": 3}).json()
    assert answer["fallback"] is True
    assert answer["items"] == [item_raw(6), item_raw(13), item_raw(20)]  # train_count = id % 7 in conftest


def test_known_user_gets_model_scores_without_seen_items(serve):
    client, _ = serve("recmamba")
    answer = client.get("/users/user-0/recommendations", params={"k": 5}).json()
    assert answer["fallback"] is False and len(answer["items"]) == 5
    assert answer["scores"] == sorted(answer["scores"], reverse=True)
    seen = {item_raw(int(i)) for i in user_histories()[1][0]}
    assert not seen & set(answer["items"])
    with_seen = client.get("/users/user-0/recommendations", params={"k": 50, "exclude_seen": "false"}).json()
    assert len(with_seen["items"]) == 50


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": [{"user": "u", "item": item_raw(1), "timestamp": "soon"}]}, "events[0].timestamp"),
        ({"events": [{"user": "u", "timestamp": 5}]}, "events[0].item"),
        ({"events": [{"user": "u", "item": item_raw(1), "timestamp": 5, "extra": 1}]}, "events[0].extra"),
        ({"events": []}, "events"),
        ({"evts": []}, "events"),
        (
            {
                "events": [
                    {"user": "u", "item": item_raw(1), "timestamp": 5},
                    {"user": "u", "item": "x", "timestamp": 6},
                ]
            },
            "events[1].item",
        ),
    ],
)
def test_bad_events_are_refused_with_422_naming_the_field(serve, body, field):
    client, _ = serve("gru4rec")
    response = client.post("/events", json=body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(field)
    assert client.get("/users/u/recommendations").json()["fallback"] is True  # nothing was applied


def test_query_parameters_are_checked(serve):
    client, _ = serve("gru4rec")
    response = client.get("/users/user-0/recommendations", params={"k": 0})
    assert response.status_code == 422 and response.json()["detail"].startswith("k:")


@pytest.mark.parametrize("name", ["recmamba", "sasrec"])
def test_posted_events_give_the_recommendations_of_the_whole_history(serve, name):
    client, folder = serve(name)
    _, histories, _ = user_histories()
    new_items = [3, 17, 17, 42]
    events = [{"user": "user-2", "item": item_raw(i), "timestamp": 5000 + t} for t, i in enumerate(new_items)]
    answer = client.post("/events", json={"events": events}).json()
    assert answer == {"applied": 4, "duplicates": 0, "stale": 0, "new_users": 0}
    assert client.post("/events", json={"events": events}).json()["stale"] == 3  # posting again changes nothing
    served = client.get("/users/user-2/recommendations", params={"k": 10, "exclude_seen": "false"}).json()
    model = load_model(folder)
    _, hidden = engine_for(model).encode([np.concatenate([histories[2], new_items])])
    with torch.no_grad():
        expected = model.scores(torch.from_numpy(hidden)).topk(10).indices[0].tolist()
    assert served["items"] == [item_raw(i) for i in expected]


def test_eight_concurrent_writers_lose_no_event_while_readers_read(serve):
    client, folder = serve("recmamba")
    users = [f"user-{u}" for u in range(6)]
    store = StateStore(folder / STORE_FILE, np.float32)
    initial = {user: store.get(user) for user in users}

    def writer(w: int) -> None:
        with httpx.Client(base_url=client.base_url, timeout=60) as own:
            for r in range(3):
                items = [1 + 2 * (w * 3 + r) + j for j in (0, 1)]  # distinct across writers and requests
                events = [{"user": u, "item": item_raw(i), "timestamp": 5000} for u in users for i in items]
                assert own.post("/events", json={"events": events}).status_code == 200

    writing = threading.Event()
    writing.set()

    def reader(_: int) -> int:
        answers = 0
        with httpx.Client(base_url=client.base_url, timeout=60) as own:
            while writing.is_set() or not answers:
                answer = own.get("/users/user-0/recommendations", params={"exclude_seen": "false"})
                assert answer.status_code == 200 and len(answer.json()["items"]) == 10
                answers += 1
        return answers

    with ThreadPoolExecutor(10) as pool:
        readers = [pool.submit(reader, r) for r in range(2)]
        list(pool.map(writer, range(8)))
        writing.clear()
        assert all(r.result() > 0 for r in readers)
    engine = engine_for(load_model(folder))
    for user in users:
        journal = store.journal(user)
        assert sorted(item for item, _ in journal) == list(range(1, 49))
        stored = store.get(user)
        assert stored.events == initial[user].events + 48
        np.testing.assert_allclose(stored.state, replay(engine, journal, initial[user]), rtol=1e-5, atol=1e-6)


def test_the_serve_command_serves_the_published_folder(served_folder, project_home):
    folder = served_folder("gru4rec")
    link = project_home / "data" / "serving" / "handmade" / "gru4rec"
    link.parent.mkdir(parents=True)
    link.symlink_to(folder)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "recmodels.serve",
        "--model",
        "gru4rec",
        "--port",
        str(port),
        "--home",
        str(project_home),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health").json()
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.2)
        assert (health["model"], health["users"]) == ("gru4rec", 6)
    finally:
        server.terminate()
        server.wait(timeout=30)
