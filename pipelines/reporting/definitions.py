"""The reporting domain's part of the code location: the comparison of every model trained on the current split.

It reads MLflow through the ``mlflow_tracking`` resource that the training domain provides."""

import dagster as dg

from pipelines.reporting.assets import model_comparison

reporting_defs = dg.Definitions(assets=[model_comparison])
