-- Global time split: events before $cutoff_valid train (0), [$cutoff_valid, $cutoff_test) validation
-- targets (1), from $cutoff_test on test targets (2). Each user's full history stays in the row, so every
-- target keeps all earlier events as context.
CREATE OR REPLACE TABLE splits AS
SELECT
    user_id,
    items,
    timestamps,
    CAST(list_transform(timestamps, lambda t: CASE
        WHEN t < $cutoff_valid THEN 0
        WHEN t < $cutoff_test THEN 1
        ELSE 2
    END) AS TINYINT[]) AS split
FROM sequences
ORDER BY user_id;
