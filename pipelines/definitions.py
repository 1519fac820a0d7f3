"""The one Definitions object of the code location: each domain contributes its own, merged here.

Domains are imported as modules, not their Definitions objects: Dagster loads this module and refuses one
with more than one Definitions at module scope.
"""

import dagster as dg

from pipelines.data import definitions as data
from pipelines.refresh import definitions as refresh
from pipelines.reporting import definitions as reporting
from pipelines.serving import definitions as serving
from pipelines.training import definitions as training

defs = dg.Definitions.merge(
    data.data_defs, training.training_defs, reporting.reporting_defs, refresh.refresh_defs, serving.serving_defs
)
