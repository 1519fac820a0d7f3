-- Every event of every user has exactly one label in {0, 1, 2, 3}: rows whose lists disagree in length or
-- hold another label, and the difference between labelled events and events.
SELECT
    (SELECT count(*) FROM splits
     WHERE len(split) <> len(items) OR len(timestamps) <> len(items)
        OR list_count(list_filter(split, lambda s: s NOT IN (0, 1, 2, 3))) > 0),
    (SELECT count(*) FROM events) - (SELECT coalesce(sum(len(split)), 0) FROM splits),
    (SELECT count(*) FROM sequences) - (SELECT count(*) FROM splits);
