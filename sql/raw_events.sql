-- Normalize the staged rows: raw ids as read, timestamps in milliseconds, and a source row id that
-- follows file order then line order (the tie-break for equal timestamps).
CREATE OR REPLACE TABLE raw_events AS
SELECT user_raw, item_raw, ts_raw * $ts_factor AS ts, rowid AS row_id, filename AS source_file
FROM raw_stage;
