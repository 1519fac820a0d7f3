-- The first staged row with a missing id or a missing or negative timestamp, with its offset among the
-- data rows of its file (rows are staged in file order, so rowid minus the file's first rowid).
WITH bad AS (
    SELECT rowid AS row_id, filename, user_raw, item_raw, ts_raw
    FROM raw_stage
    WHERE user_raw IS NULL OR item_raw IS NULL OR ts_raw IS NULL OR ts_raw < 0
    ORDER BY rowid
    LIMIT 1
)
SELECT filename, row_id - (SELECT min(rowid) FROM raw_stage WHERE filename = bad.filename),
    user_raw, item_raw, ts_raw
FROM bad;
