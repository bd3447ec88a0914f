"""Readable terminal output: the runtime's own messages and the functions' logs.

In AWS, whatever a function writes to stdout/stderr becomes CloudWatch Logs lines, and
Embedded Metric Format (EMF) objects in those lines become CloudWatch metrics. Locally the
lines arrive here, one by one, from each sandbox:

* Powertools JSON log lines -> ``HH:MM:SS LEVEL [function] message key=value ...`` (the
  Lambda context keys are left out, an ``exception`` is printed indented below);
* EMF blobs (JSON with an ``_aws`` key) -> one ``METRICS`` summary line; the raw objects
  are kept in memory (:attr:`Console.metrics`) and handed to :attr:`Console.metric_sink`
  (the runtime's :class:`~.metrics.MetricStore`, which makes CloudWatch metrics of them);
* anything else -> the line as is, prefixed with the function.

The JSON log records are kept too, the last ``max_logs`` of them (:meth:`Console.logs`,
``GET /_local/logs``): what CloudWatch Logs Insights would find, e.g. every line of one
correlation id, from the API call through the queues to the send.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["Console"]

_CONTEXT_KEYS = frozenset(
    {
        "level",
        "message",
        "timestamp",
        "location",
        "service",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "xray_trace_id",
        "sampling_rate",
        "exception",
        "exception_name",
        "stack_trace",
    }
)
_COLOURS = {
    "DEBUG": "\033[2m",
    "INFO": "\033[36m",
    "WARNING": "\033[33m",
    "ERROR": "\033[31m",
    "CRITICAL": "\033[1;31m",
    "METRICS": "\033[35m",
    "REPORT": "\033[2m",
}
_RESET = "\033[0m"


class Console:
    """Thread-safe line printer; also the in-memory store of EMF metric objects."""

    def __init__(
        self, stream: TextIO | None = None, *, quiet: bool = False, max_metrics: int = 10_000, max_logs: int = 20_000
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.quiet = quiet
        self._logs: deque[dict[str, Any]] = deque(maxlen=max_logs)
        self.metrics: deque[dict[str, Any]] = deque(maxlen=max_metrics)
        # called with every EMF object and the function that printed it
        self.metric_sink: Callable[[dict[str, Any], str], Any] | None = None
        self._lock = threading.Lock()
        self._colour = bool(getattr(self.stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ

    # ------------------------------------------------------------------- output
    def _emit(self, level: str, source: str, text: str, extra_lines: list[str] | None = None) -> None:
        if self.quiet:
            return
        label = f"{level:<7}"
        if self._colour and level in _COLOURS:
            label = f"{_COLOURS[level]}{label}{_RESET}"
        prefix = f"{time.strftime('%H:%M:%S')} {label} [{source}]" if source else f"{time.strftime('%H:%M:%S')} {label}"
        lines = [f"{prefix} {text}".rstrip(), *(f"    {line}" for line in extra_lines or [])]
        with self._lock:
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # the terminal went away (closed pipe, shutdown)
                pass

    def info(self, text: str, source: str = "local") -> None:
        self._emit("INFO", source, text)

    def warning(self, text: str, source: str = "local") -> None:
        self._emit("WARNING", source, text)

    def error(self, text: str, source: str = "local", extra_lines: list[str] | None = None) -> None:
        self._emit("ERROR", source, text, extra_lines)

    def report(self, source: str, text: str) -> None:
        """One line per invocation, like Lambda's REPORT line."""
        self._emit("REPORT", source, text)

    def plain(self, text: str = "") -> None:
        """Unprefixed text (the start-up banner)."""
        if self.quiet:
            return
        with self._lock:
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    # ---------------------------------------------------------- function output
    def function_line(self, function: str, line: str) -> None:
        """One line a function wrote to stdout/stderr."""
        stripped = line.strip()
        if not stripped:
            return
        data: Any = None
        if stripped.startswith("{"):
            try:
                data = json.loads(stripped)
            except ValueError:
                data = None
        if isinstance(data, dict) and isinstance(data.get("_aws"), dict):
            self.metrics.append(data)
            if self.metric_sink is not None:
                try:
                    self.metric_sink(data, function.partition("#")[0])
                except Exception as exc:  # never lose the function's output for a metric
                    self._emit("WARNING", function, f"metrics not kept: {exc}")
            self._emit("METRICS", function, summarize_emf(data))
        elif isinstance(data, dict) and "level" in data and "message" in data:
            logical_id, _, environment = function.partition("#")  # "Worker#2": the pool's second
            with self._lock:
                self._logs.append({"function": logical_id, "environment": environment or "1", **data})
            level = str(data["level"]).upper()
            fields = " ".join(f"{key}={_short(value)}" for key, value in data.items() if key not in _CONTEXT_KEYS)
            text = f"{_short(data['message'], quote=False)} {fields}".rstrip()
            trace = data.get("exception") or data.get("stack_trace")
            extra = str(trace).splitlines() if trace else None
            self._emit(level, function, text, extra)
        else:
            self._emit("", function, line.rstrip())

    def logs(
        self, correlation_id: str | None = None, function: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """The kept JSON log records, oldest first (the last ``limit``), of one correlation id
        and/or function if given."""
        with self._lock:
            records = list(self._logs)
        found = [
            record
            for record in records
            if (correlation_id is None or record.get("correlation_id") == correlation_id)
            and (function is None or record.get("function") == function)
        ]
        return found[-limit:]


def summarize_emf(blob: dict[str, Any]) -> str:
    """``Namespace: Name=value Unit, ... (dimension=value, ...)`` for one EMF object."""
    parts: list[str] = []
    dimensions: set[str] = set()
    for directive in blob["_aws"].get("CloudWatchMetrics") or []:
        namespace = directive.get("Namespace", "?")
        for group in directive.get("Dimensions") or []:
            dimensions.update(group)
        metrics = []
        for metric in directive.get("Metrics") or []:
            name = metric.get("Name", "?")
            value = blob.get(name)
            unit = metric.get("Unit", "")
            metrics.append(f"{name}={_short(value)}{' ' + unit if unit and unit != 'None' else ''}")
        parts.append(f"{namespace}: {', '.join(metrics)}")
    dims = ", ".join(f"{name}={blob.get(name)}" for name in sorted(dimensions))
    return "; ".join(parts) + (f" ({dims})" if dims else "")


def _short(value: Any, *, quote: bool = True) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return ",".join(_short(v) for v in value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    text = str(value)
    if quote and (" " in text or not text):
        return json.dumps(text)
    return text
