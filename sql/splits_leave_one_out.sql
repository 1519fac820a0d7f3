-- Leave-one-out: each user's last event is the test target (2), the one before the validation target
-- (1), the rest train (0), as in published SASRec-style results. Users [$first_user, $end_user) only: the
-- table is filled a batch of users at a time (splits.sql).
INSERT INTO splits
SELECT
    user_id,
    items,
    timestamps,
    CAST(list_transform(range(length), lambda i: CASE
        WHEN i = length - 1 THEN 2
        WHEN i = length - 2 THEN 1
        ELSE 0
    END) AS TINYINT[]) AS split
FROM sequences
WHERE user_id >= $first_user AND user_id < $end_user
ORDER BY user_id;
