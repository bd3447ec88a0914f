"""CloudWatch: the task metrics the functions emitted (EMF), read back for the admin's figures."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mailroom.adapters.aws import cloudwatch_client
from mailroom.logic.reporting import MetricQuery
from mailroom.observability import TASK_TYPES

# GetMetricData takes at most 500 queries a request.
MAX_QUERIES = 500


class CloudWatchMetrics:
    """``GetMetricData`` over the namespace's task metrics: one period per window, so each
    query has one value (its statistic over the whole window)."""

    def __init__(self, namespace: str, client: Any = None) -> None:
        self.namespace = namespace
        self.client = client or cloudwatch_client()

    def _query(self, query: MetricQuery, seconds: int) -> dict[str, Any]:
        return {
            "Id": query.id,
            "MetricStat": {
                "Metric": {
                    "Namespace": self.namespace,
                    "MetricName": query.metric,
                    # exactly the set Powertools emits a task metric under (observability.TaskMetrics)
                    "Dimensions": [
                        {"Name": "service", "Value": TASK_TYPES[query.task_type]},
                        {"Name": "task_type", "Value": query.task_type},
                    ],
                },
                "Period": seconds,
                "Stat": query.stat,
            },
            "ReturnData": True,
        }

    def statistics(
        self, queries: list[MetricQuery], start_of: Mapping[str, datetime], end: datetime
    ) -> dict[str, float | None]:
        values: dict[str, float | None] = {query.id: None for query in queries}
        stats = {query.id: query.stat for query in queries}
        by_window: dict[str, list[MetricQuery]] = {}
        for query in queries:
            by_window.setdefault(query.window, []).append(query)
        for window, asked in by_window.items():
            start = start_of[window]
            seconds = int((end - start).total_seconds())
            for first in range(0, len(asked), MAX_QUERIES):
                chunk = [self._query(query, seconds) for query in asked[first : first + MAX_QUERIES]]
                token: str | None = None
                parts: dict[str, list[float]] = {}
                while True:
                    kwargs: dict[str, Any] = {
                        "MetricDataQueries": chunk,
                        "StartTime": start,
                        "EndTime": end,
                        "ScanBy": "TimestampAscending",
                    }
                    if token:
                        kwargs["NextToken"] = token
                    response = self.client.get_metric_data(**kwargs)
                    for result in response.get("MetricDataResults", []):
                        found = [float(v) for v in result.get("Values") or [] if v is not None]
                        parts.setdefault(result["Id"], []).extend(found)  # pages add up
                    token = response.get("NextToken")
                    if not token:
                        break
                for query_id, found in parts.items():
                    # one period, one value. Should CloudWatch ever split the window, sums still
                    # add up; a percentile of a part is not the window's: none then.
                    if found and stats[query_id] in ("Sum", "SampleCount"):
                        values[query_id] = sum(found)
                    elif len(found) == 1:
                        values[query_id] = found[0]
        return values
