-- Dense user ids 1..n in raw-id order (0 is padding), kept so ids map back to raw ids.
CREATE OR REPLACE TABLE user_map AS
SELECT CAST(row_number() OVER (ORDER BY user_raw) AS INTEGER) AS user_id, user_raw
FROM (SELECT DISTINCT user_raw FROM kept);
