"""The data layer's part of the code location: the four assets, their checks and the DuckDB resource."""

import dagster as dg

from pipelines.data.assets import DATA_ASSETS
from pipelines.data.resources import warehouse_resource

data_defs = dg.Definitions(assets=DATA_ASSETS, resources={"duckdb": warehouse_resource()})
