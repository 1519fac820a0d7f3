-- Users whose labels are not train..., validation, test at the end of the history.
SELECT count(*) FROM splits
WHERE split[-1] <> 2
    OR (len(split) >= 2 AND split[-2] <> 1)
    OR list_count(list_filter(split, lambda s: s = 0)) <> greatest(len(split) - 2, 0);
