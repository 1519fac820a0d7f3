-- Append the staged served events (the service's acknowledged events, landing/served/<dataset>) to raw_events:
-- ids cast to the source's types, row ids after every source row (a source row wins a tie), the day file as
-- source_file. Timestamps are milliseconds already.
INSERT INTO raw_events (user_raw, item_raw, ts, row_id, source_file)
SELECT user_raw, item_raw, ts_raw, $first_row + rowid, CAST(filename AS VARCHAR)
FROM raw_stage;
