-- Violations in raw_events: rows without user, item or timestamp, or with a negative timestamp.
SELECT count(*) FROM raw_events WHERE user_raw IS NULL OR item_raw IS NULL OR ts IS NULL OR ts < 0;
