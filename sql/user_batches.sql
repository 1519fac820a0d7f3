-- Consecutive ranges of dense user ids [first_user, end_user) of about $events_per_batch events each (a
-- user is never split, so a batch holds at least one user, however long its history): the tables of lists
-- per user (sequences, splits) are built a batch at a time.
SELECT min(user_id) AS first_user, max(user_id) + 1 AS end_user
FROM (
    SELECT user_id, (sum(count(*)) OVER (ORDER BY user_id) - 1) // $events_per_batch AS batch
    FROM events
    GROUP BY user_id
)
GROUP BY batch
ORDER BY first_user;
