-- A private in-memory database beside the warehouse: the days' files are staged and normalized there,
-- so the full ingest's raw_events in the warehouse is never touched, and merged from there without a copy.
ATTACH IF NOT EXISTS ':memory:' AS daily_staging;
