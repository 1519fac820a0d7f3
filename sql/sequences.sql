-- The per-user history table, empty: sequences_insert.sql fills it a range of users at a time.
CREATE OR REPLACE TABLE sequences (user_id INTEGER, items INTEGER[], timestamps BIGINT[], length INTEGER);
