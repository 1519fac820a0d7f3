"""The one Definitions object of the code location: each domain contributes its own, merged here."""

import dagster as dg

defs = dg.Definitions.merge()
