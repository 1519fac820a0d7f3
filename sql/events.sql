-- The normalized event table: dense ids, in stable order (user, timestamp, then source row id, because
-- real logs have many equal timestamps).
CREATE OR REPLACE TABLE events AS
SELECT u.user_id, i.item_id, k.ts, k.row_id
FROM kept AS k
JOIN user_map AS u USING (user_raw)
JOIN item_map AS i USING (item_raw)
ORDER BY u.user_id, k.ts, k.row_id;
