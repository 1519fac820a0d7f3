"""The code location exposes the data assets, their blocking checks, the resource and the writer pool."""

import dagster as dg

from pipelines.data.assets import DATA_ASSETS
from pipelines.data.resources import POOL, Warehouse
from pipelines.definitions import defs


def test_data_assets_are_in_the_code_location():
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw_events", "events", "sequences", "splits"} <= keys


def test_every_warehouse_writer_shares_one_pool():
    assert {asset.op.pool for asset in DATA_ASSETS} == {POOL}


def test_every_check_is_blocking():
    specs = [spec for asset in DATA_ASSETS for spec in asset.check_specs]
    assert len(specs) == 10 and all(spec.blocking for spec in specs)


def test_warehouse_resource_is_keyed_warehouse():
    assert isinstance(defs.resources["warehouse"], Warehouse)


def test_the_code_location_module_holds_exactly_one_definitions_object():
    """``dagster ... -m pipelines.definitions`` refuses a module with several Definitions at module scope."""
    import pipelines.definitions as module

    assert [name for name, value in vars(module).items() if isinstance(value, dg.Definitions)] == ["defs"]
