-- The events of the ingested days, from the normalized rows of their files (file_days: file -> day).
-- Row ids are the day number * 2^32 plus the row's position among its day's rows (files in name order,
-- then line order), so they are the same whether a day is ingested alone or with all the others.
-- One row per distinct (user, item, timestamp), keeping the first source row; ids become text last, after
-- deduplicating on the source's own types.
CREATE OR REPLACE TABLE day_batch AS
WITH located AS (
    SELECT r.user_raw, r.item_raw, r.ts, r.row_id, f.day
    FROM raw_events AS r
    JOIN file_days AS f ON r.source_file = f.source_file
),
day_start AS (
    SELECT day, min(row_id) AS first_row FROM located GROUP BY day
)
SELECT
    CAST(l.user_raw AS VARCHAR) AS user_raw,
    CAST(l.item_raw AS VARCHAR) AS item_raw,
    l.ts,
    l.day,
    min(date_diff('day', DATE '1970-01-01', l.day) * 4294967296 + l.row_id - d.first_row) AS row_id
FROM located AS l
JOIN day_start AS d USING (day)
GROUP BY l.user_raw, l.item_raw, l.ts, l.day;
