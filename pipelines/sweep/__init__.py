"""The length sweep: quality and cost of each model as its training window grows (the paper's Table 3)."""
