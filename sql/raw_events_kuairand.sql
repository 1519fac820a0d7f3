-- Normalize staged KuaiRand rows, keeping the exposures the user counts as interactions: all of them,
-- clicks (is_click = 1) or long views (long_view = 1). time_ms orders events; hourmin is rounded.
CREATE OR REPLACE TABLE raw_events AS
SELECT user_raw, item_raw, ts_raw AS ts, rowid AS row_id, CAST(filename AS VARCHAR) AS source_file
FROM raw_stage
WHERE $interactions = 'all'
    OR ($interactions = 'click' AND is_click = 1)
    OR ($interactions = 'long_view' AND long_view = 1);
