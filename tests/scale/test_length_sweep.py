"""The length sweep trains one model at two window lengths through the real worker, logs a run per point
under the sweep's run, and marks a point that ran out of time instead of dropping it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dagster as dg
import mlflow
import pytest

from pipelines.metric_names import TAG_KIND
from pipelines.paths import ProjectPaths
from pipelines.resources import MlflowTracking
from pipelines.sweep.assets import KIND_POINT, KIND_SWEEP, TAG_MAX_LEN, length_sweep
from pipelines.sweep.config import LengthSweepConfig
from pipelines.sweep.launcher import main as launcher_main
from pipelines.sweep.points import OUT_OF_MEMORY, TAG_STATUS, TIMED_OUT, outcome
from pipelines.sweep.results import SweepRow, markdown_table, plot_against_length
from tests.data.conftest import TINY, materialize

TINY_TRAIN = {"epochs": 1, "batch_size": 16, "eval_max_targets": 50}


def sweep(config: dict) -> dg.ExecuteInProcessResult:
    resources = {"mlflow_tracking": MlflowTracking(), "pipes_subprocess_client": dg.PipesSubprocessClient()}
    with dg.DagsterInstance.get() as instance:
        return dg.materialize(
            [length_sweep],
            resources=resources,
            run_config={"ops": {"length_sweep": {"config": config}}},
            instance=instance,
            raise_on_error=False,
        )


def test_sweep_logs_one_run_per_length_and_a_table(project_home: Path):
    assert materialize(TINY).success
    result = sweep({"models": ["gru4rec"], "max_lens": [16, 8], "d_model": 8, "train": TINY_TRAIN})
    assert result.success
    metadata = result.asset_materializations_for_node("length_sweep")[0].metadata
    assert metadata["points_ok"].value == 2
    assert "| gru4rec | 8 | ok |" in metadata["sweep"].value and "| gru4rec | 16 | ok |" in metadata["sweep"].value
    client = mlflow.MlflowClient(ProjectPaths.from_env().mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("synthetic").experiment_id
    points = client.search_runs([experiment], filter_string=f"tags.`{TAG_KIND}` = '{KIND_POINT}'")
    assert sorted(run.data.tags[TAG_MAX_LEN] for run in points) == ["16", "8"]
    assert all(run.info.status == "FINISHED" and run.data.tags[TAG_STATUS] == "ok" for run in points)
    assert {run.data.params["model.max_len"] for run in points} == {"8", "16"}
    [parent] = client.search_runs([experiment], filter_string=f"tags.`{TAG_KIND}` = '{KIND_SWEEP}'")
    assert [m.step for m in client.get_metric_history(parent.info.run_id, "gru4rec/test_ndcg_10")] == [8, 16]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"length_sweep.csv", "quality_vs_length.png", "cost_vs_length.png"} <= artifacts


def test_a_point_over_its_time_limit_is_marked_timed_out(tmp_path: Path):
    status = tmp_path / "status.json"
    code = launcher_main([str(status), "0.5", "--", sys.executable, "-c", "import time; time.sleep(30)"])
    assert code == 124 and json.loads(status.read_text()) == {"returncode": 124, "timed_out": True}
    assert outcome(124, True, "") == TIMED_OUT
    assert outcome(1, False, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB") == OUT_OF_MEMORY
    assert outcome(-9, False, "") == OUT_OF_MEMORY


def test_failed_points_stay_in_the_table_and_plot(tmp_path: Path):
    values = {"test_ndcg_10": 0.1, "test_hr_10": 0.2, "valid_ndcg_10": 0.1, "s_per_epoch": 3.0,
              "peak_memory_mb": 100.0, "events_per_s": 1000.0}  # fmt: skip
    rows = [
        SweepRow("sasrec", 128, "ok", "a", values),
        SweepRow("sasrec", 8192, OUT_OF_MEMORY, "b", error="MemoryError"),
        SweepRow("recmamba", 8192, TIMED_OUT, "c"),
    ]
    table = markdown_table(rows)
    assert "| sasrec | 8192 | out_of_memory | - |" in table and "| recmamba | 8192 | timed_out |" in table
    assert plot_against_length(rows, {"NDCG": "test_ndcg_10"}, "quality", tmp_path / "q.png").stat().st_size > 0


def test_bad_sweep_config_names_the_field():
    with pytest.raises(ValueError, match=r"max_lens must be distinct positive window lengths, got \[8, 8\]"):
        LengthSweepConfig(models=["gru4rec"], max_lens=[8, 8])
    with pytest.raises(ValueError, match="unknown: \\['bert4rec'\\]"):
        LengthSweepConfig(models=["bert4rec"])
