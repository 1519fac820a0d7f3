-- Global time split: events before $cutoff_valid train (0). In the validation window [$cutoff_valid,
-- $cutoff_test) and the test window [$cutoff_test, inf), independently, each user's chosen events are
-- targets (1, 2) and the others context (3): never trained on or ranked, but kept in the history, so later
-- targets see them as a deployed model would. An event at the moment of a history's first event is never
-- chosen: nothing strictly precedes it to predict it from (a target's history holds only earlier events,
-- never one at its own timestamp: simultaneous events have no order, and their row order is the source's).
-- A window's candidates are ordered by a key: position ('first_per_user'), position from the end
-- ('last_per_user') or a hash of (user, position, $seed) ('sample_per_user': a uniform draw, the same for
-- the same seed); the first $cap of them are chosen, every candidate when $cap is NULL ('all'). Ties of
-- the hash are broken by position, so a window never holds more than $cap targets. Users
-- [$first_user, $end_user) only: the table is filled a batch of users at a time (splits.sql).
INSERT INTO splits
WITH bounds AS (
    SELECT
        user_id,
        items,
        timestamps,
        -- histories are in time order, so these are the positions where the windows start
        list_count(list_filter(timestamps, lambda t: t < $cutoff_valid)) AS valid_start,
        list_count(list_filter(timestamps, lambda t: t < $cutoff_test)) AS test_start,
        -- the events at the first event's moment: nothing strictly earlier to predict them from
        list_count(list_filter(timestamps, lambda t: t = timestamps[1])) AS first_moment
    FROM sequences
    WHERE user_id >= $first_user AND user_id < $end_user
),
keyed AS (
    SELECT
        *,
        list_transform(range(valid_start, len(timestamps)), lambda i: {
            rank: CASE $targets
                WHEN 'sample_per_user' THEN hash(user_id, i, $seed)
                WHEN 'last_per_user' THEN CAST(len(timestamps) - i AS UBIGINT)
                ELSE CAST(i AS UBIGINT)
            END,
            position: i
        }) AS window_keys  -- one per event from valid_start on
    FROM bounds
),
chosen AS (
    SELECT
        *,
        -- the key of the last chosen candidate; NULL when every candidate is chosen
        CASE WHEN $cap IS NOT NULL THEN list_sort(list_filter(
            window_keys[1:test_start - valid_start], lambda k: k.position >= first_moment
        ))[$cap] END AS last_valid_key,
        CASE WHEN $cap IS NOT NULL THEN list_sort(list_filter(
            window_keys[test_start - valid_start + 1:], lambda k: k.position >= first_moment
        ))[$cap] END AS last_test_key
    FROM keyed
)
SELECT
    user_id,
    items,
    timestamps,
    CAST(list_transform(range(len(timestamps)), lambda i: CASE
        WHEN i < valid_start THEN 0
        WHEN i < first_moment THEN 3
        WHEN i < test_start THEN
            CASE WHEN last_valid_key IS NULL OR window_keys[i - valid_start + 1] <= last_valid_key THEN 1 ELSE 3 END
        ELSE
            CASE WHEN last_test_key IS NULL OR window_keys[i - valid_start + 1] <= last_test_key THEN 2 ELSE 3 END
    END) AS TINYINT[]) AS split
FROM chosen
ORDER BY user_id;
