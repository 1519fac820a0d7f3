-- Users below $min_user_events events; items below $min_item_count occurrences (0 disables that part).
SELECT
    (SELECT count(*) FROM (SELECT 1 FROM events GROUP BY user_id HAVING count(*) < $min_user_events)),
    (SELECT count(*) FROM (SELECT 1 FROM events GROUP BY item_id HAVING count(*) < $min_item_count));
