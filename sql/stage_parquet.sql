-- Read the landing Parquet files into a temporary staging table, picking the mapped columns by name
-- (bound as parameters) and numbering rows within each file for error messages.
CREATE OR REPLACE TEMP TABLE raw_stage AS
SELECT
    CAST(p[$user_column] AS VARCHAR) AS user_raw,
    CAST(p[$item_column] AS VARCHAR) AS item_raw,
    TRY_CAST(p[$time_column] AS BIGINT) AS ts_raw,
    filename
FROM read_parquet($files, filename = true) AS p;
