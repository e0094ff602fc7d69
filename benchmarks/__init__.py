"""Benchmarks, not tests: `python -m benchmarks.clinic_benchmark`, `series_benchmark.py`."""
