-- Which run last wrote each table of this dataset's warehouse (see pipelines/data/table_writes.py).
CREATE TABLE IF NOT EXISTS table_writes (asset VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL, written_at TIMESTAMPTZ);
