-- The split table, empty: splits_global_time.sql or splits_leave_one_out.sql fill it a range of users at a
-- time (user_batches.sql), so that its memory follows the batch, not the log.
CREATE OR REPLACE TABLE splits (user_id INTEGER, items INTEGER[], timestamps BIGINT[], split TINYINT[]);
