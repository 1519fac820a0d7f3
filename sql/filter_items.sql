-- Drop items seen fewer than $min_count times.
DELETE FROM kept
WHERE item_raw IN (SELECT item_raw FROM kept GROUP BY item_raw HAVING count(*) < $min_count);
