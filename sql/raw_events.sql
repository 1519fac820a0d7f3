-- Normalize the staged rows: raw ids as read, timestamps in milliseconds (ts_raw * $multiply // $divide,
-- after the plausibility check has bounded ts_raw, so nothing overflows), and a source row id that follows
-- file order then line order (the tie-break for equal timestamps).
CREATE OR REPLACE TABLE raw_events AS
SELECT user_raw, item_raw, ts_raw * $multiply // $divide AS ts, rowid AS row_id, CAST(filename AS VARCHAR) AS source_file
FROM raw_stage;
