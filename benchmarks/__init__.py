"""Benchmarks: ``python -m benchmarks`` (``make bench``), ``python -m benchmarks.soak``.

``python -m benchmarks`` prints one table. Every figure sits next to a baseline measured
in the same run, interleaved with it, so the ratios stay meaningful on a shared, noisy
machine where absolute times drift. Each scenario also checks its own results (exact
counts in the metrics, in the exporters' readings), so a fast wrong answer fails the run
instead of passing as a win.
"""
