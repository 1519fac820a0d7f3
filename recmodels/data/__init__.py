"""The split export read into flat arrays, in memory or memory-mapped out of core (Contract 1)."""
