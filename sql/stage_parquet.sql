-- Read the landing Parquet files into a temporary staging table, picking the mapped columns by name
-- (bound as parameters). Ids become trimmed text (blank = missing); a numeric time column is kept in the
-- file's unit. $filter_column is the user column when no filter is set (filter_raw is then unused).
CREATE OR REPLACE TEMP TABLE raw_stage AS
SELECT
    NULLIF(trim(CAST(p[$user_column] AS VARCHAR)), '') AS user_raw,
    NULLIF(trim(CAST(p[$item_column] AS VARCHAR)), '') AS item_raw,
    TRY_CAST(p[$time_column] AS BIGINT) AS ts_raw,
    trim(CAST(p[$filter_column] AS VARCHAR)) AS filter_raw,
    CAST(filename AS landing_file) AS filename
FROM read_parquet($files, filename = true) AS p;
