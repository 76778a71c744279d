"""Outside references the tests and benchmarks compare xaijax against (optional dependencies)."""
