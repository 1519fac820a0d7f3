-- Train events, targets, and cold targets (items never seen in a train event) per split; also the items
-- whose first event falls at or after the validation cut-off (unknown to training by construction).
WITH flat AS (
    SELECT unnest(items) AS item_id, unnest(split) AS label FROM splits
),
train_items AS (
    SELECT DISTINCT item_id FROM flat WHERE label = 0
)
SELECT
    count(*) FILTER (WHERE label = 0),
    count(*) FILTER (WHERE label = 1),
    count(*) FILTER (WHERE label = 2),
    count(*) FILTER (WHERE label = 1 AND t.item_id IS NULL),
    count(*) FILTER (WHERE label = 2 AND t.item_id IS NULL),
    (SELECT count(*) FROM train_items),
    (SELECT max(item_id) FROM item_map),
    (SELECT count(*) FROM sequences)
FROM flat
LEFT JOIN train_items AS t USING (item_id);
