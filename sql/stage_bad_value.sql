-- The first staged row with a missing id or a missing or negative timestamp, and its line number
-- within its file (rows are staged in file order, so rowid minus the file's first rowid counts lines).
WITH bad AS (
    SELECT rowid AS row_id, filename,
        CASE
            WHEN user_raw IS NULL THEN 'user_raw'
            WHEN item_raw IS NULL THEN 'item_raw'
            ELSE 'ts_raw'
        END AS column_name,
        CASE WHEN ts_raw < 0 THEN 'negative' ELSE 'missing' END AS problem
    FROM raw_stage
    WHERE user_raw IS NULL OR item_raw IS NULL OR ts_raw IS NULL OR ts_raw < 0
    ORDER BY rowid
    LIMIT 1
)
SELECT bad.filename, bad.row_id - (SELECT min(rowid) FROM raw_stage WHERE filename = bad.filename),
    bad.column_name, bad.problem
FROM bad;
