"""Evaluation: full ranking, top-k, statistics, popularity baselines, convergence and cost."""
