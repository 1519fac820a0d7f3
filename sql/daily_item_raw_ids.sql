-- Raw item id of dense ids 1..$num_items, in id order: row i of a walk-forward model's embedding is item i.
SELECT item_raw FROM daily_item_map WHERE item_id <= $num_items ORDER BY item_id;
