-- As stage_parquet.sql, for a time column typed as a timestamp or date: it is an absolute time already,
-- so it is staged as milliseconds since the epoch (UTC), whatever time_unit says.
CREATE OR REPLACE TEMP TABLE raw_stage AS
SELECT
    NULLIF(trim(CAST(p[$user_column] AS VARCHAR)), '') AS user_raw,
    NULLIF(trim(CAST(p[$item_column] AS VARCHAR)), '') AS item_raw,
    epoch_ms(p[$time_column]) AS ts_raw,
    trim(CAST(p[$filter_column] AS VARCHAR)) AS filter_raw,
    CAST(filename AS landing_file) AS filename
FROM read_parquet($files, filename = true) AS p;
