-- Parse the landing CSV/TSV files into a temporary staging table. Columns (names and types, in file
-- order) are bound, so the parser never guesses; rows that do not parse go to reject_errors instead of
-- being silently dropped, and the caller turns the first one into an error naming file, line and column.
CREATE OR REPLACE TEMP TABLE raw_stage AS
SELECT * REPLACE (CAST(filename AS landing_file) AS filename)
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
);
