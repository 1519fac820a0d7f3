-- Users seen for the first time get the next dense ids, in order of their first event (timestamp, then
-- row id, then raw id); existing users keep theirs.
INSERT INTO daily_user_map
SELECT CAST((SELECT coalesce(max(user_id), 0) FROM daily_user_map) + row_number() OVER (ORDER BY first_ts, first_row, user_raw) AS INTEGER), user_raw
FROM (
    SELECT user_raw, min(ts) AS first_ts, min(row_id) AS first_row
    FROM daily_staging.day_batch
    WHERE user_raw NOT IN (SELECT user_raw FROM daily_user_map)
    GROUP BY user_raw
);
