-- Drop users with fewer than $min_count events.
DELETE FROM kept
WHERE user_raw IN (SELECT user_raw FROM kept GROUP BY user_raw HAVING count(*) < $min_count);
