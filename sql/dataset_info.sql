-- Remember which dataset the warehouse holds, so the splits asset names its export after it.
CREATE OR REPLACE TABLE dataset_info AS
SELECT $dataset AS dataset, $source AS source, $landing_dir AS landing_dir, $num_files AS num_files;
