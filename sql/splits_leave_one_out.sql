-- Leave-one-out: each user's last event is the test target (2), the one before the validation target
-- (1), the rest train (0), as in published SASRec-style results.
CREATE OR REPLACE TABLE splits AS
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
ORDER BY user_id;
