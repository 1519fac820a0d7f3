-- The files about to be staged, as the ENUM type of raw_stage's filename column: each staged row then holds
-- a small integer instead of the file's path (the path string alone more than doubled the staging table, so
-- it outgrew DuckDB's memory limit and spilled: 1,310 MiB against 563 MiB for 11.7 M LFM-1b rows). The type
-- is temporary, like raw_stage, and remade for each staging; raw_events reads the names back as text.
DROP TABLE IF EXISTS temp.raw_stage;
DROP TYPE IF EXISTS landing_file;
CREATE TEMP TYPE landing_file AS ENUM (SELECT DISTINCT unnest($files));
