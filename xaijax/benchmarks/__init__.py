"""Speed measurements behind `scripts/benchmark.py`, one module per workload."""
