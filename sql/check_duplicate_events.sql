-- (user, item, timestamp) triples that occur more than once in events.
SELECT count(*) FROM (SELECT 1 FROM events GROUP BY user_id, item_id, ts HAVING count(*) > 1);
