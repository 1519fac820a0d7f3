-- Sequences hold every event once, in time order: events not covered, and users out of order.
SELECT
    (SELECT count(*) FROM events) - (SELECT coalesce(sum(length), 0) FROM sequences),
    (SELECT count(*) FROM sequences
     WHERE timestamps <> list_sort(timestamps) OR len(items) <> length OR len(timestamps) <> length);
