"""The one logger and the one metrics object of a function. Nobody makes new ones.

Powertools reads POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE and
POWERTOOLS_LOG_LEVEL from the function's environment (template.yaml).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "metrics", "timed"]


@contextmanager
def timed(metric_name: str = "ProcessingTime") -> Iterator[None]:
    """Record how long the block took, in milliseconds, as ``metric_name``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        metrics.add_metric(name=metric_name, unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000)
