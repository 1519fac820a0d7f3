-- Events labelled against the cut-offs: train at or after $cutoff_valid, validation targets outside
-- [$cutoff_valid, $cutoff_test), test targets before $cutoff_test, context before $cutoff_valid.
WITH flat AS (SELECT unnest(timestamps) AS ts, unnest(split) AS label FROM splits)
SELECT
    count(*) FILTER (WHERE label = 0 AND ts >= $cutoff_valid),
    count(*) FILTER (WHERE label = 1 AND (ts < $cutoff_valid OR ts >= $cutoff_test)),
    count(*) FILTER (WHERE label = 2 AND ts < $cutoff_test),
    count(*) FILTER (WHERE label = 3 AND ts < $cutoff_valid)
FROM flat;
