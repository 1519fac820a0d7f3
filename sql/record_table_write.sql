-- Record that run $run_id has just written the table(s) of asset $asset.
INSERT OR REPLACE INTO table_writes VALUES ($asset, $run_id, now());
