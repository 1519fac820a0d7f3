-- Cut-off timestamps at two quantiles of all event timestamps.
SELECT quantile_disc(ts, $valid_quantile), quantile_disc(ts, $test_quantile) FROM events;
