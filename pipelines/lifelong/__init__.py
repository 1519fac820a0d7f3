"""Walk-forward (test-then-train) evaluation of models as the day-partitioned log grows and drifts."""
