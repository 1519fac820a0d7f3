-- Dense item ids 1..n in raw-id order (0 is padding), kept so ids map back to raw ids.
CREATE OR REPLACE TABLE item_map AS
SELECT CAST(row_number() OVER (ORDER BY item_raw) AS INTEGER) AS item_id, item_raw
FROM (SELECT DISTINCT item_raw FROM kept);
