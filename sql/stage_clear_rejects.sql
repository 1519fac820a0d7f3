-- DuckDB appends every scan's rejected rows to the same reject_errors/reject_scans tables of a connection:
-- drop them before a scan, so a row rejected by an earlier (failed) ingest is never reported for this one.
DROP TABLE IF EXISTS reject_errors;
DROP TABLE IF EXISTS reject_scans;
