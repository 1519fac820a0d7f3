-- Parse RecBole atomic .inter files (tab-separated, typed header) into a temporary staging table. Every
-- column is bound by its full header name (``user_id:token``, ...) so the parser never guesses: tokens as
-- text, trimmed, a blank one counted as missing; the timestamp as a double (RecBole types it ``float``),
-- floored to whole seconds. A NaN or infinite timestamp becomes NULL, which the bad-value check reports
-- with its file and line; rows the parser rejects go to reject_errors, and the caller reports the first.
CREATE OR REPLACE TEMP TABLE raw_stage AS
SELECT
    NULLIF(trim(p[$user_column]), '') AS user_raw,
    NULLIF(trim(p[$item_column]), '') AS item_raw,
    TRY_CAST(floor(p[$time_column]) AS BIGINT) AS ts_raw,
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
