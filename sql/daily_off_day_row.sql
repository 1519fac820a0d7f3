-- The first row whose timestamp does not fall on its file's day (file_days: file -> day), with its offset
-- among the data rows of its file, so the error can name the line.
SELECT r.source_file, r.row_id - (SELECT min(rowid) FROM raw_stage AS s WHERE s.filename = r.source_file), r.ts, f.day
FROM raw_events AS r
JOIN file_days AS f ON r.source_file = f.source_file
WHERE r.ts < date_diff('day', DATE '1970-01-01', f.day) * 86400000
    OR r.ts >= (date_diff('day', DATE '1970-01-01', f.day) + 1) * 86400000
ORDER BY r.row_id
LIMIT 1;
