-- The first staged served event whose user or item id is not an integer where raw_events holds integer ids:
-- its file, its offset among the data rows of that file, the column as the file names it, and the value.
WITH bad AS (
    SELECT
        rowid AS row_id,
        filename,
        CASE WHEN $integer_users AND TRY_CAST(user_raw AS BIGINT) IS NULL THEN 'user' ELSE 'item' END AS column_name,
        CASE WHEN $integer_users AND TRY_CAST(user_raw AS BIGINT) IS NULL THEN user_raw ELSE item_raw END AS value
    FROM raw_stage
    WHERE ($integer_users AND TRY_CAST(user_raw AS BIGINT) IS NULL)
        OR ($integer_items AND TRY_CAST(item_raw AS BIGINT) IS NULL)
    ORDER BY rowid
    LIMIT 1
)
SELECT filename, row_id - (SELECT min(rowid) FROM raw_stage WHERE filename = bad.filename), column_name, value
FROM bad;
