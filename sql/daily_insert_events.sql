-- The batch's events with their dense ids.
INSERT INTO daily_events SELECT user_id, item_id, ts, row_id, day FROM mapped_batch;
