"""The recommendation service over real HTTP: uvicorn on a free port, httpx requests, real stores."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
import torch
import uvicorn
from fastapi import FastAPI

from recmodels.serving.app import MAX_BODY_BYTES, create_app
from recmodels.serving.auth import READ_TOKEN_ENV, WRITE_TOKEN_ENV
from recmodels.serving.bundle import STORE_FILE, load_model
from recmodels.serving.engines import engine_for
from recmodels.serving.store import StateStore
from tests.serving.conftest import item_raw, user_histories
from tests.serving.test_store import replay

WRITE_TOKEN = "write-token-of-the-tests"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def published(folder: Path) -> Path:
    """A link to the folder, as the user_states asset publishes one."""
    link = folder.parent / "current"
    link.symlink_to(folder.name)
    return link


@contextlib.contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """uvicorn serving ``app`` on a free port (in a thread) until the block ends; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def serve(served_folder: Callable[[str], Path]) -> Iterator[Callable[[str], tuple[httpx.Client, Path]]]:
    """``start(model)``: a uvicorn server on a free port for a freshly built folder, and a client for it that
    sends the write token."""
    with contextlib.ExitStack() as servers:

        def start(name: str) -> tuple[httpx.Client, Path]:
            folder = served_folder(name)
            base_url = servers.enter_context(running(create_app(published(folder), write_token=WRITE_TOKEN)))
            client = httpx.Client(base_url=base_url, headers=bearer(WRITE_TOKEN), timeout=60)
            return servers.enter_context(client), folder

        yield start


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
        ({"evts": []}, "evts"),  # "evts: unknown field (a batch has events)"
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


def event_body(**event: object) -> bytes:
    """A one-event body as raw JSON, with the fields given replacing those of a valid event."""
    return json.dumps({"events": [{"user": "u", "item": item_raw(1), "timestamp": 5, **event}]}).encode()


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"", 400, "body"),
        (b"events=1", 400, "body"),
        (b'{"events": [{"user": "u", "item": "item-1", "timestamp": 5}]', 400, "body"),
        (b'{"events": [{"user": "\\ud800", "item": "item-1", "timestamp": 5}]}', 400, "body"),  # lone surrogate
        (b'{"events": [{"user": "\xff", "item": "item-1", "timestamp": 5}]}', 400, "body"),  # not UTF-8
        (b"[" * 100_000, 422, "body"),
        (b"null", 422, "body"),
        (event_body(item="item-1\x00"), 422, "events[0].item"),
        (event_body(user=""), 422, "events[0].user"),
        (event_body(user="u" * 257), 422, "events[0].user"),
        (event_body(user=True), 422, "events[0].user"),
        (event_body(user=2**64), 422, "events[0].user"),
        (event_body(user=[[[[[]]]]]), 422, "events[0].user"),
        (event_body(timestamp=10**30), 422, "events[0].timestamp"),
        (event_body(timestamp=2**53), 422, "events[0].timestamp"),
        (event_body(timestamp=-1), 422, "events[0].timestamp"),
        (event_body(timestamp=1.5), 422, "events[0].timestamp"),
        (event_body(item=7), 422, "events[0].item"),  # the id "7": not in the catalogue
        (json.dumps({"events": [json.loads(event_body())["events"][0]] * 10_001}).encode(), 422, "events"),
    ],
)
def test_odd_bodies_are_refused_with_4xx_naming_the_field(serve, body, status, field):
    client, _ = serve("gru4rec")
    response = client.post("/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["detail"].startswith(f"{field}: ") and answer["errors"][0] == answer["detail"]
    assert client.get("/health").json()["users"] == 6  # nothing was applied


def test_json_integer_ids_mean_their_text_and_7_0_is_7(serve):
    client, _ = serve("gru4rec")
    assert client.post("/events", content=event_body(user=42)).json()["new_users"] == 1
    for same_user, timestamp in [("42", 6), (42.0, 7.0)]:  # JSON does not tell 42 from 42.0
        assert client.post("/events", content=event_body(user=same_user, timestamp=timestamp)).json() == {
            "applied": 1, "duplicates": 0, "stale": 0, "new_users": 0
        }  # fmt: skip
    assert client.get("/users/42/recommendations").json()["fallback"] is False


def test_bodies_over_the_limit_are_refused_with_413_before_they_are_read_whole(serve):
    client, _ = serve("gru4rec")
    declared = client.post("/events", content=b" " * (MAX_BODY_BYTES + 1))
    assert declared.status_code == 413 and declared.json()["detail"].startswith(f"body: larger than {MAX_BODY_BYTES}")
    sent = 0

    def chunked() -> Iterator[bytes]:  # no length declared: the server has to count
        nonlocal sent
        chunk = b'{"user": "u", "item": "item-1", "timestamp": 5},' * 1000
        yield b'{"events": ['
        while sent < 20 * MAX_BODY_BYTES:
            sent += len(chunk)
            yield chunk

    streamed = client.post("/events", content=chunked())
    assert streamed.status_code == 413 and sent < 20 * MAX_BODY_BYTES  # the server stopped reading; so did we


def test_seconds_timestamps_of_a_known_user_are_stale_with_a_hint_to_send_milliseconds(serve):
    client, _ = serve("gru4rec")
    now_ms = 1_700_000_000_000
    assert client.post("/events", content=event_body(user="ana", timestamp=now_ms)).json()["applied"] == 1
    in_seconds = client.post("/events", content=event_body(user="ana", item=item_raw(2), timestamp=now_ms // 1000))
    assert in_seconds.status_code == 200
    assert in_seconds.json() == {
        "applied": 0, "duplicates": 0, "stale": 1, "new_users": 0,
        "hint": "1 stale events have timestamps that look like seconds since the epoch; send milliseconds",
    }  # fmt: skip
    late = client.post("/events", content=event_body(user="ana", item=item_raw(2), timestamp=now_ms - 60_000))
    assert late.json() == {"applied": 0, "duplicates": 0, "stale": 1, "new_users": 0}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/users/%ED%A0%80/recommendations", 422),  # UTF-8 of a lone surrogate
        ("/users/%FF/recommendations", 422),
        ("/users/a%00b/recommendations", 422),
        (f"/users/{'u' * 257}/recommendations", 422),
        ("/users//recommendations", 422),
        ("/users/a%2Fb/recommendations", 200),  # an id with a slash is still reachable
        ("/users/%EF%BF%BD/recommendations", 200),  # a real U+FFFD is a character like any other
    ],
)
def test_path_users_no_store_can_hold_are_refused(serve, path, status):
    client, _ = serve("gru4rec")
    response = client.get(path)
    assert response.status_code == status, response.text
    if status == 422:
        assert response.json()["detail"].startswith("user: ")


def test_a_missing_served_folder_answers_503_until_it_is_published(serve):
    client, folder = serve("gru4rec")
    link = folder.parent / "current"
    link.unlink()
    response = client.get("/users/user-0/recommendations")
    assert response.status_code == 503 and response.json()["detail"].startswith("service: ")
    link.symlink_to(folder.name)
    assert client.get("/users/user-0/recommendations").status_code == 200


def test_the_openapi_document_describes_the_batch_it_enforces(serve):
    client, _ = serve("gru4rec")
    document = client.get("/openapi.json").json()
    body = document["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    batch = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert (batch["properties"]["events"]["maxItems"], batch["additionalProperties"]) == (10_000, False)
    event = document["components"]["schemas"]["Event"]
    assert event["additionalProperties"] is False and set(event["required"]) == {"user", "item", "timestamp"}
    assert {branch["maximum"] for branch in event["properties"]["timestamp"]["anyOf"]} == {2**53 - 1}
    responses = document["paths"]["/events"]["post"]["responses"]
    assert set(responses) == {"200", "400", "401", "413", "422", "503"}


def test_the_openapi_document_names_the_token_each_operation_needs(serve):
    client, _ = serve("gru4rec")
    document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert {name: (s["type"], s["scheme"]) for name, s in schemes.items()} == {
        "write_token": ("http", "bearer"),
        "read_token": ("http", "bearer"),
    }
    security = {
        (method, path): operation.get("security")
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    assert security == {
        ("get", "/health"): None,
        ("get", "/users/{user}/recommendations"): None,
        ("post", "/events"): [{"write_token": []}],
    }


CHALLENGE = 'Bearer realm="recmamba"'
WRONG = f'{CHALLENGE}, error="invalid_token"'


@pytest.mark.parametrize(
    ("authorization", "challenge", "detail"),
    [
        (None, CHALLENGE, "authorization: missing; send Authorization: Bearer <write token>"),
        ("Basic dTpw", CHALLENGE, "authorization: another scheme; send Authorization: Bearer <write token>"),
        ("Bearer", WRONG, "authorization: not the write token"),
        ("Bearer guess", WRONG, "authorization: not the write token"),
        (f"Bearer {WRITE_TOKEN}x", WRONG, "authorization: not the write token"),
    ],
)
def test_events_without_the_write_token_are_refused_with_401_and_not_applied(serve, authorization, challenge, detail):
    client, _ = serve("gru4rec")
    with httpx.Client(base_url=client.base_url, timeout=60) as anonymous:
        headers = {} if authorization is None else {"authorization": authorization}
        response = anonymous.post("/events", content=event_body(user="ana"), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == challenge
    assert response.json() == {"detail": detail, "errors": [detail]}
    assert client.get("/users/ana/recommendations").json()["fallback"] is True  # nothing was applied


def test_events_without_the_write_token_are_refused_before_their_body_is_read(serve):
    client, _ = serve("gru4rec")
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        while sent < 20 * MAX_BODY_BYTES:
            sent += 100_000
            yield b" " * 100_000

    with httpx.Client(base_url=client.base_url, timeout=60) as anonymous:
        refused = anonymous.post("/events", content=endless())
    assert refused.status_code == 401 and sent < 20 * MAX_BODY_BYTES  # the server closed; so did we


def test_events_with_the_write_token_are_applied_whatever_the_case_of_the_scheme(serve):
    client, _ = serve("gru4rec")
    lower_case = {"authorization": f"bearer {WRITE_TOKEN}"}
    answer = httpx.post(client.base_url.join("/events"), content=event_body(user="ana"), headers=lower_case)
    assert answer.json() == {"applied": 1, "duplicates": 0, "stale": 0, "new_users": 1}
    assert client.get("/users/ana/recommendations").json()["fallback"] is False


def test_a_read_token_guards_recommendations_and_health_but_not_the_document(served_folder):
    app = create_app(published(served_folder("gru4rec")), write_token=WRITE_TOKEN, read_token="read-token")
    with running(app) as base_url, httpx.Client(base_url=base_url, timeout=60) as client:
        for path in ("/health", "/users/user-0/recommendations"):
            assert client.get(path).status_code == 401
            refused = client.get(path, headers=bearer(WRITE_TOKEN))  # the write token is not a read token
            assert refused.status_code == 401 and refused.json()["detail"] == "authorization: not the read token"
            assert client.get(path, headers=bearer("read-token")).status_code == 200
        document = client.get("/openapi.json").json()
        recommendations = document["paths"]["/users/{user}/recommendations"]["get"]
        assert recommendations["security"] == [{"read_token": []}] and "401" in recommendations["responses"]
        assert client.get("/docs").status_code == 200


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
        with httpx.Client(base_url=client.base_url, headers=bearer(WRITE_TOKEN), timeout=60) as own:
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


def without_tokens(**env: str) -> dict[str, str]:
    """This process's environment without the tokens a developer's shell may hold, and with ``env``."""
    return {k: v for k, v in os.environ.items() if k not in (WRITE_TOKEN_ENV, READ_TOKEN_ENV)} | env


@contextlib.contextmanager
def serve_command(
    home: Path, model: str, folder: Path, *options: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python -m recmodels.serve`` in its own process group, serving ``folder`` published under ``home``, until
    the block ends (the group is killed: uvicorn's worker processes too); yields its base URL and process. Its
    environment is ``env``, else this one without tokens; its stderr goes to ``home/serve.log``."""
    link = home / "data" / "serving" / "handmade" / model
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(folder)
    port = free_port()
    command = [sys.executable, "-m", "recmodels.serve", "--model", model, "--port", str(port)]
    log = home / "serve.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [*command, "--home", str(home), *options],
            env=without_tokens() if env is None else env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                ready = httpx.get(f"{base_url}/health")
                assert ready.status_code in (200, 401), ready.text  # 401: reads need a token
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield base_url, server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def generated_token(home: Path) -> str:
    """The write token the serve command generated, read as a client on the same machine does."""
    return (home / "data" / "serving" / ".write_token").read_text().strip()


def test_the_serve_command_serves_the_published_folder(served_folder, project_home):
    with serve_command(project_home, "gru4rec", served_folder("gru4rec")) as (base_url, _):
        health = httpx.get(f"{base_url}/health").json()
        assert (health["model"], health["users"]) == ("gru4rec", 6)


def test_without_a_token_the_serve_command_generates_one_for_this_machine_and_keeps_it(served_folder, project_home):
    folder, token_file = served_folder("gru4rec"), project_home / "data" / "serving" / ".write_token"
    tokens = []
    for restart in range(2):
        with serve_command(project_home, "gru4rec", folder) as (base_url, _):
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
            tokens.append(generated_token(project_home))
            body = {"events": [{"user": "ana", "item": item_raw(1), "timestamp": 5000 + restart}]}
            assert httpx.post(f"{base_url}/events", json=body).status_code == 401
            assert httpx.post(f"{base_url}/events", json=body, headers=bearer(tokens[-1])).json()["applied"] == 1
        log = (project_home / "serve.log").read_text()
        assert str(token_file) in log and tokens[-1] not in log  # where the token is, never the token
    assert tokens[0] == tokens[1] and len(tokens[0]) >= 32  # clients that read it once go on working


def test_the_serve_command_refuses_other_interfaces_without_a_given_write_token(project_home):
    command = [sys.executable, "-m", "recmodels.serve", "--home", str(project_home), "--host", "0.0.0.0"]
    done = subprocess.run(command, env=without_tokens(), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "error: --host 0.0.0.0 is reachable from other machines: give a write token (RECMAMBA_WRITE_TOKEN or"
        " --write-token-file) to open writes to them; the generated token is for clients on this machine only"
    )
    assert not (project_home / "data" / "serving" / ".write_token").exists()


def test_given_token_files_open_every_interface_and_guard_reads_too(served_folder, project_home, tmp_path):
    write_file, read_file = tmp_path / "write", tmp_path / "read"
    write_file.write_text("written-by-an-operator\n")  # as echo writes it: the newline is not part of the token
    read_file.write_text("read-token")
    write_file.chmod(0o600)
    read_file.chmod(0o600)
    options = ["--host", "0.0.0.0", "--write-token-file", str(write_file), "--read-token-file", str(read_file)]
    with serve_command(project_home, "gru4rec", served_folder("gru4rec"), *options) as (base_url, _):
        assert httpx.get(f"{base_url}/health").status_code == 401
        assert httpx.get(f"{base_url}/health", headers=bearer("read-token")).json()["users"] == 6
        body = {"events": [{"user": "ana", "item": item_raw(1), "timestamp": 5000}]}
        posted = httpx.post(f"{base_url}/events", json=body, headers=bearer("written-by-an-operator"))
        assert posted.json()["new_users"] == 1
    assert not (project_home / "data" / "serving" / ".write_token").exists()


def test_a_write_token_in_the_environment_is_the_one_writes_need(served_folder, project_home):
    env = without_tokens(RECMAMBA_WRITE_TOKEN="from-the-environment")
    with serve_command(project_home, "gru4rec", served_folder("gru4rec"), env=env) as (base_url, _):
        body = {"events": [{"user": "ana", "item": item_raw(1), "timestamp": 5000}]}
        assert httpx.post(f"{base_url}/events", json=body, headers=bearer("from-the-environment")).status_code == 200
    assert "from RECMAMBA_WRITE_TOKEN" in (project_home / "serve.log").read_text()


def test_two_worker_processes_apply_every_event_exactly_once(served_folder, project_home):
    folder = served_folder("gru4rec")
    writers, requests_each, users_each = 6, 4, 5
    with serve_command(project_home, "gru4rec", folder, "--workers", "2") as (base_url, server):
        children = psutil.Process(server.pid).children()
        assert sum("spawn_main" in " ".join(child.cmdline()) for child in children) == 2  # uvicorn's workers
        token = generated_token(project_home)
        assert not any(token in " ".join(child.cmdline()) for child in children)  # inherited, not on a command line

        def writer(w: int) -> int:
            applied = 0
            with httpx.Client(base_url=base_url, headers=bearer(token), timeout=60) as client:
                for r in range(requests_each):  # later requests, later timestamps: none is stale
                    events = [
                        {"user": f"w{w}-{u}", "item": item_raw(1 + (w + r + u) % 50), "timestamp": 10_000 + r}
                        for u in range(users_each)
                    ]
                    answer = client.post("/events", json={"events": events})
                    assert answer.status_code == 200, answer.text
                    applied += answer.json()["applied"]
            return applied

        def reader(_: int) -> None:
            with httpx.Client(base_url=base_url, timeout=60) as client:
                for _ in range(20):
                    assert client.get("/users/user-0/recommendations").status_code == 200

        with ThreadPoolExecutor(writers + 2) as pool:
            readers = [pool.submit(reader, r) for r in range(2)]
            assert sum(pool.map(writer, range(writers))) == writers * requests_each * users_each
            for done in readers:
                done.result()
        assert httpx.get(f"{base_url}/health").json()["users"] == 6 + writers * users_each
    store = StateStore(folder / STORE_FILE, np.float32)
    for w in range(writers):
        for u in range(users_each):
            expected = [(1 + (w + r + u) % 50, 10_000 + r) for r in range(requests_each)]
            assert store.journal(f"w{w}-{u}") == expected
