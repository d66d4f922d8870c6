"""Throughput and memory benchmarks of the pipeline; run ``benchmarks/run_benchmarks.py``."""
