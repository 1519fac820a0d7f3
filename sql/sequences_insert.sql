-- One row per user of [$first_user, $end_user): item ids and timestamps as lists in time order (ties broken
-- by source row id). Each user's events are ordered once, as (item, time) pairs, and the pairs split into the
-- two lists. An ordered list aggregate holds its groups in memory until it finishes, which DuckDB cannot
-- spill, so the table is built a range of users at a time (user_batches.sql), never all at once.
INSERT INTO sequences
SELECT
    user_id,
    list_transform(history, lambda event: event.item_id) AS items,
    list_transform(history, lambda event: event.ts) AS timestamps,
    CAST(len(history) AS INTEGER) AS length
FROM (
    SELECT user_id, list({'item_id': item_id, 'ts': ts} ORDER BY ts, row_id) AS history
    FROM events
    WHERE user_id >= $first_user AND user_id < $end_user
    GROUP BY user_id
)
ORDER BY user_id;
