-- Items whose first event is at or after the validation cut-off.
SELECT count(*) FROM (SELECT item_id FROM events GROUP BY item_id HAVING min(ts) >= $cutoff_valid);
