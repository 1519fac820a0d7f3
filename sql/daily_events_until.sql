-- Every event before $end_ms in (user, time, row id) order: the walk-forward's view of the log at a window's end.
SELECT user_id, item_id, ts FROM daily_events WHERE ts < $end_ms ORDER BY user_id, ts, row_id;
