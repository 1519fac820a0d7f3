-- Drop the staged rows once merged (or when the ingest failed).
DETACH DATABASE IF EXISTS daily_staging;
