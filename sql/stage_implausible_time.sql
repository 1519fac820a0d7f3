-- The first staged timestamp outside the plausible range [$low, $high], both in the file's own unit (so
-- nothing is multiplied yet), with its offset among the data rows of its file.
WITH bad AS (
    SELECT rowid AS row_id, filename, ts_raw
    FROM raw_stage
    WHERE ts_raw < $low OR ts_raw > $high
    ORDER BY rowid
    LIMIT 1
)
SELECT filename, row_id - (SELECT min(rowid) FROM raw_stage WHERE filename = bad.filename), ts_raw
FROM bad;
