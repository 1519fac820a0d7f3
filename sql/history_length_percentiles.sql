-- History-length percentiles over users, for the materialization metadata.
SELECT quantile_disc(length, [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]) FROM sequences;
