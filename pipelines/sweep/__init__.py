"""The sweeps: quality and cost of each model as its training window grows (the paper's Table 3), and the
ablation of named model variants over seeds."""
