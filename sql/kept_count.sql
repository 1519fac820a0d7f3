SELECT count(*) FROM kept;
