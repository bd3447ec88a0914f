"""Chaos runs: the whole system under injected faults."""
