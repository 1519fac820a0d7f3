-- Remove the events of the days being (re)ingested: a day's partition is replaced as a whole.
DELETE FROM daily_events WHERE list_contains(CAST($days AS DATE[]), day);
