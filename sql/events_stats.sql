-- Row, user and item counts of the event table.
SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id) FROM events;
