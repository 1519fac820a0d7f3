-- Train events, targets, and cold targets (items never seen in a train event) per split; context events
-- (after the validation cut-off, not targets); also the items seen in training, the catalogue size and the
-- users. One pass: labels are counted per item first.
WITH per_item AS (
    SELECT
        item_id,
        count(*) FILTER (WHERE label = 0) AS train,
        count(*) FILTER (WHERE label = 1) AS valid,
        count(*) FILTER (WHERE label = 2) AS test,
        count(*) FILTER (WHERE label = 3) AS context
    FROM (SELECT unnest(items) AS item_id, unnest(split) AS label FROM splits)
    GROUP BY item_id
)
SELECT
    coalesce(sum(train), 0),
    coalesce(sum(valid), 0),
    coalesce(sum(test), 0),
    coalesce(sum(context), 0),
    coalesce(sum(valid) FILTER (WHERE train = 0), 0),
    coalesce(sum(test) FILTER (WHERE train = 0), 0),
    count(*) FILTER (WHERE train > 0),
    (SELECT max(item_id) FROM item_map),
    (SELECT count(*) FROM sequences)
FROM per_item;
