-- Events the filters work on: one row per distinct (user, item, timestamp), keeping the first source row.
CREATE OR REPLACE TEMP TABLE kept AS
SELECT user_raw, item_raw, ts, min(row_id) AS row_id
FROM raw_events
GROUP BY user_raw, item_raw, ts;
