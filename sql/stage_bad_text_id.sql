-- The first staged row whose text user or item id holds a control character (NUL, tab, newline, ...),
-- which would show up as a different id than the one a user reads; offset as in stage_bad_value.sql.
WITH bad AS (
    SELECT rowid AS row_id, filename, user_raw, item_raw, ts_raw
    FROM raw_stage
    WHERE regexp_matches(user_raw, '[\x00-\x1f\x7f]') OR regexp_matches(item_raw, '[\x00-\x1f\x7f]')
    ORDER BY rowid
    LIMIT 1
)
SELECT filename, row_id - (SELECT min(rowid) FROM raw_stage WHERE filename = bad.filename),
    user_raw, item_raw, ts_raw
FROM bad;
