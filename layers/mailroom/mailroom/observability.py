"""The one logger and the one metrics object of a function. Nobody makes new ones.

Powertools reads POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE and
POWERTOOLS_LOG_LEVEL from the function's environment (template.yaml).

No address reaches the logs: Mailroom's own log lines name subscribers by id, and every
line is passed through ``redact`` as it is written, which masks anything that looks like
an address - in an AWS error message that quotes the recipient, a validation error that
quotes its input, or a stack trace. The domain is kept (``***@example.com``): it is what
an operator needs to see a provider's trouble, and names nobody. Tokens never reach them
either: a JWT (an admin's ID token), and the value of any ``token=``/``session=``/``password=``
query parameter or JSON field (a link's signed token, a sign-in's secrets), become ``***``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit

# a local part (no spaces, quotes or brackets) "@" a domain with at least one dot
ADDRESS = re.compile(r"[^\s\"'<>()\[\],;:@\\]+@((?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+)")


# a JWT (a Cognito ID or access token: base64url JSON header "eyJ", payload, signature)
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
# a link's signed token, or a session, as a query parameter or a JSON field
SECRET_VALUE = re.compile(r"(?i)(\b(?:token|session|password|id_token|new_password)(?:=|\\?\"\s*:\s*\\?\"))[^&\s\"\\]+")


def redact(text: str) -> str:
    """``text`` with every address's local part masked, and every token, session or
    password value replaced by ``***``."""
    if "@" in text:
        text = ADDRESS.sub(r"***@\1", text)
    if "eyJ" in text:
        text = JWT.sub("***", text)
    return SECRET_VALUE.sub(r"\1***", text)


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON lines, with addresses masked in the whole line (message, extra
    keys, exception and stack trace alike)."""

    def serialize(self, log: Any) -> str:
        return redact(super().serialize(log))


logger = Logger(logger_formatter=RedactingFormatter())
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "metrics", "redact", "timed"]


@contextmanager
def timed(metric_name: str = "ProcessingTime") -> Iterator[None]:
    """Record how long the block took, in milliseconds, as ``metric_name``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        metrics.add_metric(name=metric_name, unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000)
