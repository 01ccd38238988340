"""Benchmarks: ``python -m tests.bench.mux_bench`` (``make bench``)."""
