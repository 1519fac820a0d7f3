-- Whether raw_events holds its user and item ids as integers (the source's own type), to which served events
-- (ids as text) are cast.
SELECT
    bool_or(column_name = 'user_raw' AND data_type IN ('TINYINT', 'SMALLINT', 'INTEGER', 'BIGINT', 'HUGEINT')),
    bool_or(column_name = 'item_raw' AND data_type IN ('TINYINT', 'SMALLINT', 'INTEGER', 'BIGINT', 'HUGEINT'))
FROM information_schema.columns
WHERE table_name = 'raw_events' AND table_catalog = current_database() AND table_schema = current_schema();
