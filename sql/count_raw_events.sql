SELECT count(*) FROM raw_events;
