"""The sweeps' code location: ``length_sweep`` and ``ablation``.

A code location of its own, beside the main one, because the main job materializes the whole graph
(``--select '*'``) and the refresh job every asset: neither should train every model five times over.
Load it with ``dagster dev -m pipelines.definitions -m pipelines.sweep.definitions``; it finds the split the
main location's ``splits`` asset exported (same Dagster instance).
"""

import dagster as dg

from pipelines.resources import MlflowTracking
from pipelines.sweep.assets import ablation, length_sweep

defs = dg.Definitions(
    assets=[length_sweep, ablation],
    resources={"mlflow_tracking": MlflowTracking(), "pipes_subprocess_client": dg.PipesSubprocessClient()},
)
