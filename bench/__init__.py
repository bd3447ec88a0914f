"""Benchmarks of issue #3 (campaigns): worker throughput, pacing, fan-out. Run: ``make bench``."""
