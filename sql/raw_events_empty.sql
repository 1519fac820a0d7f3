-- An empty raw_events, for days whose only files are the service's (ids as text, as they land).
CREATE OR REPLACE TABLE raw_events (user_raw VARCHAR, item_raw VARCHAR, ts BIGINT, row_id BIGINT, source_file VARCHAR);
