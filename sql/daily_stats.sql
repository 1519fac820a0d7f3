-- Rows, users and items of the day-partitioned tables, and the days they span.
SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id), min(day), max(day) FROM daily_events;
