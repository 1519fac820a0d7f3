-- The run that last wrote the table(s) of asset $asset (no row: never recorded).
SELECT run_id FROM table_writes WHERE asset = $asset;
