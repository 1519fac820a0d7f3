-- Items seen for the first time get the next dense ids, in order of their first event (timestamp, then
-- row id, then raw id); existing items keep theirs.
INSERT INTO daily_item_map
SELECT CAST((SELECT coalesce(max(item_id), 0) FROM daily_item_map) + row_number() OVER (ORDER BY first_ts, first_row, item_raw) AS INTEGER), item_raw
FROM (
    SELECT item_raw, min(ts) AS first_ts, min(row_id) AS first_row
    FROM daily_staging.day_batch
    WHERE item_raw NOT IN (SELECT item_raw FROM daily_item_map)
    GROUP BY item_raw
);
