"""The real UIs for tests: ``dagster dev`` and ``mlflow ui`` on free ports of 127.0.0.1, each in its own process
group (``dagster dev`` in the background ignores SIGTERM, so the whole group is stopped)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.paths import PROJECT_DIR


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@contextmanager
def background(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run ``command`` in its own session, logging to ``log``; stop its whole process group on exit."""
    with log.open("w") as output:
        server = subprocess.Popen(
            command,
            cwd=PROJECT_DIR,
            env={**os.environ, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield server
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


@contextmanager
def dagster_dev(log: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    port = free_port()
    command = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    with background(command, log) as server:
        yield port, server


@contextmanager
def mlflow_ui(home: Path, log: Path) -> Iterator[int]:
    """``mlflow/ui.sh`` over ``home``'s tracking store, answering /health before it is handed out."""
    port = free_port()
    env = {"RECMAMBA_HOME": str(home), "MLFLOW_PORT": str(port)}
    with background(["bash", str(PROJECT_DIR / "mlflow" / "ui.sh")], log, env) as server:
        wait_for_http(f"http://127.0.0.1:{port}/health", server, seconds=120)
        yield port


def wait_for_http(url: str, server: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server for {url} exited early with code {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer within {seconds:.0f} s")
