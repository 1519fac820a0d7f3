-- Dense item id -> raw item id, so a model's embedding rows can be matched to items across refreshes.
SELECT item_id, CAST(item_raw AS VARCHAR) AS item_raw FROM item_map ORDER BY item_id;
