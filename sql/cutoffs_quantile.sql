-- Cut-off timestamps at two quantiles of all event timestamps (both from one pass over the events).
SELECT cutoffs[1], cutoffs[2]
FROM (SELECT quantile_disc(ts, [$valid_quantile, $test_quantile]) AS cutoffs FROM events);
