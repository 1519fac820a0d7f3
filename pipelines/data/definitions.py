"""The data layer's part of the code location: the four assets, their checks and the DuckDB warehouse."""

import dagster as dg

from pipelines.data.assets import DATA_ASSETS
from pipelines.data.resources import Warehouse

data_defs = dg.Definitions(assets=DATA_ASSETS, resources={"warehouse": Warehouse()})
