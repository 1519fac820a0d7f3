-- The batch with dense ids, joined once: both the events and the sequence chunks are written from it.
CREATE OR REPLACE TEMP TABLE mapped_batch AS
SELECT u.user_id, i.item_id, b.ts, b.row_id, b.day
FROM daily_staging.day_batch AS b
JOIN daily_user_map AS u USING (user_raw)
JOIN daily_item_map AS i USING (item_raw);
