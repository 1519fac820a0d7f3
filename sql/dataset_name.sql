SELECT dataset FROM dataset_info;
