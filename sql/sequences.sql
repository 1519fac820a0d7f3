-- One row per user: item ids and timestamps as lists in time order (ties broken by source row id).
CREATE OR REPLACE TABLE sequences AS
SELECT
    user_id,
    list(item_id ORDER BY ts, row_id) AS items,
    list(ts ORDER BY ts, row_id) AS timestamps,
    CAST(count(*) AS INTEGER) AS length
FROM events
GROUP BY user_id
ORDER BY user_id;
