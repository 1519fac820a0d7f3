-- Dense ids run 1..n with no gaps, both in the maps and in events (0 stays free for padding).
SELECT
    (SELECT min(user_id) = 1 AND max(user_id) = count(*) FROM user_map)
    AND (SELECT min(item_id) = 1 AND max(item_id) = count(*) FROM item_map)
    AND (SELECT count(DISTINCT user_id) FROM events) = (SELECT count(*) FROM user_map)
    AND (SELECT count(DISTINCT item_id) FROM events) = (SELECT count(*) FROM item_map);
