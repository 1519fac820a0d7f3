-- The day-partitioned tables (pipelines/lifelong/daily_ingest.py). Raw ids are text, so every source fits one schema;
-- ids are never reassigned, so they stay valid for models trained on earlier days. A user's sequence is
-- kept as one chunk per day, so a day's ingest writes only that day's chunks; daily_sequences joins them
-- (every event lies on its chunk's day, so day order then time order is time order).
CREATE TABLE IF NOT EXISTS daily_user_map (user_id INTEGER PRIMARY KEY, user_raw VARCHAR UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS daily_item_map (item_id INTEGER PRIMARY KEY, item_raw VARCHAR UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS daily_events (user_id INTEGER, item_id INTEGER, ts BIGINT, row_id BIGINT, day DATE);
CREATE TABLE IF NOT EXISTS daily_sequence_chunks (
    user_id INTEGER, day DATE, items INTEGER[], timestamps BIGINT[], length INTEGER
);
CREATE OR REPLACE VIEW daily_sequences AS
SELECT
    user_id,
    flatten(list(items ORDER BY day)) AS items,
    flatten(list(timestamps ORDER BY day)) AS timestamps,
    CAST(sum(length) AS INTEGER) AS length
FROM daily_sequence_chunks
GROUP BY user_id;
