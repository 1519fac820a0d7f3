-- Sequences hold every event once, in time order: events not covered, and users out of order (a timestamp
-- after its successor, or missing, compared pairwise rather than by sorting every list again).
SELECT
    (SELECT count(*) FROM events) - (SELECT coalesce(sum(length), 0) FROM sequences),
    (SELECT count(*) FROM sequences
     WHERE len(items) <> length OR len(timestamps) <> length
        OR list_bool_or(list_transform(
            range(1, len(timestamps)), lambda i: coalesce(timestamps[i] > timestamps[i + 1], true)
        )));
