"""The functions' metrics, as CloudWatch would have them (``GET /_local/metrics``).

In AWS a function's Embedded Metric Format (EMF) objects - JSON log lines with an ``_aws``
key, which Powertools Metrics prints - become CloudWatch metrics when CloudWatch Logs
ingests them. Locally the sandboxes' output reaches :class:`~.console.Console`, which hands
every EMF object here. :class:`MetricStore` does what CloudWatch Logs does with it: one
datapoint per metric value per dimension set, put into the local CloudWatch (moto's, with
``PutMetricData``), so that the admin API's ``GET /admin/metrics`` reads real figures with
``GetMetricData`` there as it does in AWS. It also keeps them, for ``GET /_local/metrics``: each
(namespace, metric, dimensions) with its sample count, sum, minimum, maximum, p50 and p95.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .moto_ext import percentile

__all__ = ["Datapoint", "MetricStore", "datapoints_of"]

# An EMF Timestamp (ms since the epoch) beyond the year 9999 is no time (CloudWatch rejects it).
_LATEST_MS = 253_402_300_800_000
# PutMetricData takes at most 1,000 metric data and 150 values per datum in a request.
_MAX_DATA = 1000
_MAX_VALUES = 150


@dataclass(frozen=True)
class Datapoint:
    """The values of one metric under one dimension set, from one EMF object."""

    namespace: str
    name: str
    unit: str
    dimensions: tuple[tuple[str, str], ...]  # sorted by name
    timestamp: float  # seconds since the epoch
    values: tuple[float, ...]
    function: str


def _numbers(value: Any) -> tuple[float, ...]:
    values = value if isinstance(value, list) else [value]
    numbers = (float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool))
    return tuple(v for v in numbers if math.isfinite(v))


def datapoints_of(blob: dict[str, Any], function: str = "") -> list[Datapoint]:
    """The datapoints of one EMF object (an invalid part is skipped, as CloudWatch drops it)."""
    meta = blob.get("_aws")
    if not isinstance(meta, dict):
        return []
    stamp = meta.get("Timestamp")
    timestamp = time.time()
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and 0 < stamp < _LATEST_MS:
        timestamp = stamp / 1000
    found: list[Datapoint] = []
    for directive in meta.get("CloudWatchMetrics") or []:
        if not isinstance(directive, dict) or not isinstance(directive.get("Namespace"), str):
            continue
        for dimension_set in directive.get("Dimensions") or [[]]:
            if not isinstance(dimension_set, list) or not all(
                isinstance(name, str) and isinstance(blob.get(name), str) for name in dimension_set
            ):
                continue  # not a list of names with string values: CloudWatch rejects the set
            dimensions = tuple(sorted((name, blob[name]) for name in dimension_set))
            for metric in directive.get("Metrics") or []:
                name = metric.get("Name") if isinstance(metric, dict) else None
                values = _numbers(blob.get(name)) if isinstance(name, str) else ()
                if values:
                    unit = str(metric.get("Unit") or "None")
                    found.append(
                        Datapoint(directive["Namespace"], str(name), unit, dimensions, timestamp, values, function)
                    )
    return found


class MetricStore:
    """Every datapoint the functions emitted, kept and (with ``cloudwatch``) put into CloudWatch.

    ``cloudwatch`` returns the client to put them with (the local moto's); a failed put is
    reported once through ``warn`` and the datapoint is still kept here.
    """

    def __init__(
        self,
        cloudwatch: Callable[[], Any] | None = None,
        warn: Callable[[str], None] | None = None,
        max_points: int = 200_000,
    ) -> None:
        self._cloudwatch = cloudwatch
        self._client: Any = None
        self._warn = warn
        self._warned = False
        self._max_points = max_points
        self._points: list[Datapoint] = []
        self._lock = threading.Lock()

    def add(self, blob: dict[str, Any], function: str = "") -> list[Datapoint]:
        points = datapoints_of(blob, function)
        if not points:
            return points
        with self._lock:
            self._points.extend(points)
            if len(self._points) > self._max_points:
                del self._points[: len(self._points) - self._max_points]
        self._put(points)
        return points

    def _put(self, points: list[Datapoint]) -> None:
        if self._cloudwatch is None:
            return
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for point in points:
            for start in range(0, len(point.values), _MAX_VALUES):
                by_namespace.setdefault(point.namespace, []).append(
                    {
                        "MetricName": point.name,
                        "Dimensions": [{"Name": name, "Value": value} for name, value in point.dimensions],
                        "Timestamp": datetime.fromtimestamp(point.timestamp, UTC),
                        "Values": list(point.values[start : start + _MAX_VALUES]),
                        "Unit": point.unit,
                    }
                )
        try:
            if self._client is None:
                self._client = self._cloudwatch()
            for namespace, data in by_namespace.items():
                for start in range(0, len(data), _MAX_DATA):
                    self._client.put_metric_data(Namespace=namespace, MetricData=data[start : start + _MAX_DATA])
        except Exception as exc:  # the figures here stay; only CloudWatch's copy misses them
            if self._warn is not None and not self._warned:
                self._warned = True
                self._warn(f"metrics could not be put into the local CloudWatch: {exc}")

    def points(self) -> list[Datapoint]:
        with self._lock:
            return list(self._points)

    def summary(self, since: float | None = None) -> list[dict[str, Any]]:
        """One entry per (namespace, metric, dimensions) emitted at or after ``since`` (epoch
        seconds; all if None): samples, sum, min, max, p50, p95, the functions that emitted it,
        and when it was last emitted."""
        groups: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[Datapoint]] = {}
        for point in self.points():
            if since is None or point.timestamp >= since:
                groups.setdefault((point.namespace, point.name, point.dimensions), []).append(point)
        summary = []
        for (namespace, name, dimensions), points in sorted(groups.items()):
            values = [value for point in points for value in point.values]
            summary.append(
                {
                    "namespace": namespace,
                    "metric": name,
                    "unit": points[-1].unit,
                    "dimensions": dict(dimensions),
                    "samples": len(values),
                    "sum": sum(values),
                    "min": min(values),
                    "max": max(values),
                    "p50": percentile(values, 50),
                    "p95": percentile(values, 95),
                    "functions": sorted({point.function for point in points if point.function}),
                    "last": datetime.fromtimestamp(max(point.timestamp for point in points), UTC).isoformat(),
                }
            )
        return summary
