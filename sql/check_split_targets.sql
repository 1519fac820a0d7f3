-- The target protocol, counted per user and window independently of how splits chose the targets: users
-- with more than $cap validation or test targets ($cap NULL: no limit), targets at the moment of a history's
-- first event (nothing strictly earlier to predict them from), and windows with a predictable event (one
-- after the first event's moment) but no target, which would drop that user from the window silently.
WITH per_user AS (
    SELECT
        list_count(list_filter(split, lambda s: s = 1)) AS valid_targets,
        list_count(list_filter(split, lambda s: s = 2)) AS test_targets,
        list_count(list_filter(
            range(len(split)), lambda i: split[i + 1] IN (1, 2) AND timestamps[i + 1] = timestamps[1]
        )) > 0 AS first_is_target,
        list_count(list_filter(
            timestamps, lambda t: t > timestamps[1] AND t >= $cutoff_valid AND t < $cutoff_test
        )) AS valid_events,
        list_count(list_filter(timestamps, lambda t: t > timestamps[1] AND t >= $cutoff_test)) AS test_events
    FROM splits
)
SELECT
    count(*) FILTER (WHERE valid_targets > $cap OR test_targets > $cap),
    count(*) FILTER (WHERE first_is_target),
    count(*) FILTER (WHERE (valid_events > 0 AND valid_targets = 0) OR (test_events > 0 AND test_targets = 0))
FROM per_user;
