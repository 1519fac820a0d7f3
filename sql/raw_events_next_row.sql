-- The row id after every row of raw_events.
SELECT coalesce(max(row_id) + 1, 0) FROM raw_events;
