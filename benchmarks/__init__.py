"""Benchmarks: ``python -m benchmarks`` (``make bench``), ``python -m benchmarks.soak``."""
