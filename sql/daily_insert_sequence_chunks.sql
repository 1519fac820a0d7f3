-- One sequence chunk per (user, day) of the batch, in time order (ties broken by source row id).
INSERT INTO daily_sequence_chunks
SELECT user_id, day, list(item_id ORDER BY ts, row_id), list(ts ORDER BY ts, row_id), CAST(count(*) AS INTEGER)
FROM mapped_batch
GROUP BY user_id, day;
