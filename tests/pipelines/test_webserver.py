"""The real UIs: the Dagster code location loads with every asset, a smoke refresh launched there succeeds and
re-executes idempotently, and, in headless Chromium, both Dagster and MLflow answer who won, by how much, at
what cost and whether training converged (screenshots under ``results/screenshots/``)."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from pipelines.metric_names import KIND_COMPARISON, TAG_KIND
from pipelines.mlflow_views import run_path, training_runs_path
from pipelines.model_names import MODEL_NAMES, model_asset_name
from pipelines.paths import PROJECT_DIR, ProjectPaths
from pipelines.resources import TAG_ASSET, TAG_ROOT_RUN, TAG_RUN
from tests.ui_servers import dagster_dev, graphql, mlflow_ui

MODEL_ASSETS = {model_asset_name(name) for name in MODEL_NAMES}
DATA_ASSETS = {"raw_events", "events", "sequences", "splits"}
ASSET_QUERY = "{ assetNodes { assetKey { path } } }"
SCREENSHOTS = PROJECT_DIR / "results" / "screenshots"
SMOKE = yaml.safe_load((PROJECT_DIR / "configs" / "smoke.yaml").read_text())
# As root, in a closed network: no sandbox, no GPU, and none of Chromium's own background connections.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class UiRun:
    home: Path
    port: int
    client: DagsterGraphQLClient
    run_id: str


def wait_for_assets(port: int, server, deadline: float) -> set[str]:
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


def reexecute_steps(port: int, parent_run_id: str, run_config: dict, steps: list[str]) -> str:
    """What the UI's "Re-execute selected" sends: the parent's config, a step subset, the parent's lineage."""
    execution = {
        "selector": {
            "repositoryLocationName": "pipelines.definitions",
            "repositoryName": "__repository__",
            "jobName": "refresh",
        },
        "runConfigData": run_config,
        "stepKeys": steps,
        "executionMetadata": {"parentRunId": parent_run_id, "rootRunId": parent_run_id},
    }
    mutation = (
        "mutation($params: ExecutionParams!) { launchRunReexecution(executionParams: $params) "
        "{ __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } "
        "... on RunConfigValidationInvalid { errors { message } } } }"
    )
    answer = graphql(port, mutation, {"params": execution})["data"]["launchRunReexecution"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return answer["run"]["runId"]


@pytest.fixture(scope="module")
def ui_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiRun]:
    """``dagster dev`` over a fresh project, and one smoke refresh launched through it (shared: it is slow)."""
    root = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as patch:
        for variable, folder in (("RECMAMBA_HOME", "home"), ("DAGSTER_HOME", "dagster_home")):
            (root / folder).mkdir()
            patch.setenv(variable, str(root / folder))
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        with dagster_dev(root / "dagster_dev.log") as (port, server):
            assets = wait_for_assets(port, server, deadline=time.monotonic() + 180)
            assert assets >= DATA_ASSETS | MODEL_ASSETS | {"model_comparison"}
            client = DagsterGraphQLClient("127.0.0.1", port_number=port)
            run_id = client.submit_job_execution("refresh", run_config=SMOKE)
            assert wait_for_run(client, run_id, seconds=480) == "SUCCESS"
            yield UiRun(root / "home", port, client, run_id)


def test_ui_runs_a_smoke_refresh_and_reexecutes_it_idempotently(ui_run):
    """Re-executing steps of a run replaces their MLflow runs instead of adding a second set."""
    steps = ["model_gru4rec", "model_comparison"]
    rerun_id = reexecute_steps(ui_run.port, ui_run.run_id, SMOKE, steps)
    assert wait_for_run(ui_run.client, rerun_id, seconds=480) == "SUCCESS"

    tracking = mlflow.MlflowClient(ProjectPaths.from_env().mlflow_tracking_uri)
    experiment = tracking.get_experiment_by_name("synthetic")
    runs = tracking.search_runs([experiment.experiment_id], filter_string=f"tags.`{TAG_ROOT_RUN}` = '{ui_run.run_id}'")
    per_asset = {run.data.tags[TAG_ASSET]: run.data.tags[TAG_RUN] for run in runs}
    assert len(per_asset) == len(runs)  # one live MLflow run per asset of the root run
    assert set(per_asset) >= MODEL_ASSETS | {"model_comparison"}
    assert {asset for asset, run_id in per_asset.items() if run_id == rerun_id} == set(steps)


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("no chromium on PATH: apt-get install -y chromium, or deselect with -m 'not browser'")
    return path


def shoot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def dismiss_dagster_welcome(page) -> None:
    """A first visit to the Dagster UI asks to join its community; a user skips it."""
    from playwright.sync_api import TimeoutError as NoDialog

    with contextlib.suppress(NoDialog):
        page.get_by_role("button", name="Skip").click(timeout=5_000)


@pytest.mark.browser
def test_dagster_and_mlflow_show_the_winner_its_cost_and_convergence(ui_run):
    from playwright.sync_api import expect, sync_playwright

    tracking = mlflow.MlflowClient(ProjectPaths.from_env().mlflow_tracking_uri)
    experiment_id = tracking.get_experiment_by_name("synthetic").experiment_id
    comparison_run = tracking.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_KIND}` = '{KIND_COMPARISON}'", max_results=1
    )[0]
    champion = comparison_run.data.params["champion"]
    dagster = f"http://127.0.0.1:{ui_run.port}"
    with (
        mlflow_ui(ui_run.home, ui_run.home / "mlflow_ui.log") as mlflow_port,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)  # both UIs fill their pages from API calls after load

        page.goto(f"{dagster}/asset-groups")
        dismiss_dagster_welcome(page)
        for group in ("data", "training", "reporting"):
            expect(page.get_by_text(group, exact=True).first).to_be_visible()
        shoot(page, "dagster_asset_graph")

        page.goto(f"{dagster}/assets/model_recmamba")
        for text in ("test_ndcg_10", "inference_ms_per_target", "most_popular_test_ndcg_10", "convergence"):
            expect(page.get_by_text(text, exact=True).first).to_be_visible()
        shoot(page, "dagster_model_recmamba")

        page.goto(f"{dagster}/assets/model_comparison")
        expect(page.get_by_text("Test targets: global_time split").first).to_be_visible()  # the summary
        expect(page.get_by_text("test NDCG@10 [95% CI]").first).to_be_visible()
        expect(page.get_by_text("inference ms/target").first).to_be_visible()
        assert "NaN" not in page.inner_text("body")
        shoot(page, "dagster_model_comparison")
        plot_row = page.get_by_role("row").filter(has_text="plot_quality_vs_cost")
        plot_row.get_by_text("[Show Markdown]").click()
        expect(page.locator("img[alt='quality vs cost']").first).to_be_visible()
        shoot(page, "dagster_model_comparison_plot")
        page.keyboard.press("Escape")

        mlflow_base = f"http://127.0.0.1:{mlflow_port}"
        page.goto(mlflow_base + training_runs_path(experiment_id))
        expect(page.get_by_text("test/ndcg_10").first).to_be_visible()
        expect(page.get_by_text("cost/inference_ms_per_target").first).to_be_visible()
        for model in MODEL_NAMES:
            expect(page.get_by_role("link", name=model, exact=True).first).to_be_visible()
        assert "Token usage" not in page.inner_text("body")
        shoot(page, "mlflow_training_runs")

        page.goto(mlflow_base + run_path(experiment_id, comparison_run.info.run_id))
        expect(page.get_by_text("Test targets: global_time split").first).to_be_visible()
        expect(page.get_by_text(champion, exact=True).first).to_be_visible()
        assert "NaN" not in page.inner_text("body")
        shoot(page, "mlflow_comparison_run")
        browser.close()
