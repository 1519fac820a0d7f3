-- One row per user: item ids and timestamps as lists in time order (ties broken by source row id). Each
-- user's events are ordered once, as (item, time) pairs, and the pairs split into the two lists.
CREATE OR REPLACE TABLE sequences AS
SELECT
    user_id,
    list_transform(history, lambda event: event.item_id) AS items,
    list_transform(history, lambda event: event.ts) AS timestamps,
    CAST(len(history) AS INTEGER) AS length
FROM (
    SELECT user_id, list({'item_id': item_id, 'ts': ts} ORDER BY ts, row_id) AS history
    FROM events
    GROUP BY user_id
)
ORDER BY user_id;
