-- Parse headed or headerless CSV files with a column mapping into a temporary staging table. The file's
-- columns (names and types, in file order) are bound, so the parser never guesses; the user, item, time
-- and filter columns are then picked by name (bound too). Text ids are trimmed of surrounding spaces, and
-- a blank id counts as missing. $filter_column is the user column when no filter is set (filter_raw is
-- then unused). Rejected rows go to reject_errors, and the caller reports the first one.
CREATE OR REPLACE TEMP TABLE raw_stage AS
SELECT
    NULLIF(trim(p[$user_column]), '') AS user_raw,
    NULLIF(trim(p[$item_column]), '') AS item_raw,
    p[$time_column] AS ts_raw,
    trim(CAST(p[$filter_column] AS VARCHAR)) AS filter_raw,
    CAST(filename AS landing_file) AS filename
FROM read_csv(
    $files,
    header = $header,
    delim = $delimiter,
    quote = '"',
    escape = '"',
    columns = $columns,
    auto_detect = false,
    filename = true,
    store_rejects = true
) AS p;
