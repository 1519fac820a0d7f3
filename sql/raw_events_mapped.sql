-- Normalize staged csv/Parquet rows as raw_events.sql does, keeping only the rows whose filter column holds
-- one of $filter_values when $filter is set (e.g. behavior = 'buy'). Row ids keep counting every staged
-- row, so they still follow file order then line order.
CREATE OR REPLACE TABLE raw_events AS
SELECT user_raw, item_raw, ts_raw * $multiply // $divide AS ts, rowid AS row_id, CAST(filename AS VARCHAR) AS source_file
FROM raw_stage
WHERE NOT $filter OR list_contains(CAST($filter_values AS VARCHAR[]), filter_raw);
