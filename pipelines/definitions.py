"""The one Definitions object of the code location: each domain contributes its own, merged here."""

import dagster as dg

from pipelines.data import definitions as data
from pipelines.training import definitions as training

defs = dg.Definitions.merge(data.data_defs, training.training_defs)
