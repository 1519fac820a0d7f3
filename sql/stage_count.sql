SELECT count(*) FROM raw_stage;
