"""The real Dagster UI: the code location loads with every asset, and a smoke refresh launched there succeeds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from pipelines.paths import PROJECT_DIR, ProjectPaths
from pipelines.resources import TAG_ASSET, TAG_ROOT_RUN, TAG_RUN

EXPECTED_ASSETS = {
    "raw_events",
    "events",
    "sequences",
    "splits",
    "model_recmamba",
    "model_sasrec",
    "model_gru4rec",
    "model_linrec",
    "model_comparison",
}
ASSET_QUERY = "{ assetNodes { assetKey { path } } }"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for_assets(port: int, server: subprocess.Popen, deadline: float) -> set[str]:
    """Poll until the code location has loaded (the server answers with a non-empty asset list)."""
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"dagster dev exited early with code {server.returncode}")
        try:
            nodes = graphql(port, ASSET_QUERY)["data"]["assetNodes"]
            if nodes:
                return {"/".join(node["assetKey"]["path"]) for node in nodes}
        except (OSError, KeyError, TypeError):
            pass
        time.sleep(2)
    raise AssertionError("the Dagster webserver did not serve the code location in time")


@pytest.fixture
def dagster_dev(project_home: Path):
    port = free_port()
    log = (project_home / "dagster_dev.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_DIR,
        env={**os.environ},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield port, server
    finally:
        server.terminate()  # dagster dev shuts down its webserver, daemon and code servers
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def wait_for_run(client: DagsterGraphQLClient, run_id: str, seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    status = None
    while time.monotonic() < deadline:
        try:
            status = client.get_run_status(run_id).value
        except DagsterGraphQLClientError:
            status = None
        if status in {"SUCCESS", "FAILURE", "CANCELED"}:
            break
        time.sleep(3)
    return status


def reexecute_all_steps(port: int, parent_run_id: str) -> str:
    """What the UI's "Re-execute all" button sends."""
    mutation = (
        "mutation { launchRunReexecution(reexecutionParams: "
        f'{{parentRunId: "{parent_run_id}", strategy: ALL_STEPS}}) '
        "{ __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"
    )
    answer = graphql(port, mutation)["data"]["launchRunReexecution"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return answer["run"]["runId"]


def test_ui_lists_every_asset_and_runs_a_smoke_refresh_idempotently(dagster_dev, project_home):
    port, server = dagster_dev
    assets = wait_for_assets(port, server, deadline=time.monotonic() + 180)
    assert assets >= EXPECTED_ASSETS

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_config = yaml.safe_load((PROJECT_DIR / "configs" / "smoke.yaml").read_text())
    run_id = client.submit_job_execution("refresh", run_config=run_config)
    assert wait_for_run(client, run_id, seconds=420) == "SUCCESS"

    rerun_id = reexecute_all_steps(port, run_id)
    assert wait_for_run(client, rerun_id, seconds=420) == "SUCCESS"

    # The re-execution replaced the MLflow runs of its root run instead of adding a second set.
    tracking = mlflow.MlflowClient(ProjectPaths.from_env().mlflow_tracking_uri)
    experiment = tracking.get_experiment_by_name("synthetic")
    runs = tracking.search_runs([experiment.experiment_id], filter_string=f"tags.`{TAG_ROOT_RUN}` = '{run_id}'")
    per_asset = sorted(run.data.tags[TAG_ASSET] for run in runs)
    assert per_asset == sorted(EXPECTED_ASSETS - {"raw_events", "events", "sequences", "splits"})
    assert {run.data.tags[TAG_RUN] for run in runs} == {rerun_id}
