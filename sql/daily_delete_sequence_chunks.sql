-- Remove the sequence chunks of the days being (re)ingested; every other day's chunks stay as they are.
DELETE FROM daily_sequence_chunks WHERE list_contains(CAST($days AS DATE[]), day);
