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

import functools
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

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
# A function's own metrics (sign-ups, admin requests, ...): dimension set {service}.
metrics = Metrics()

__all__ = [
    "TASK_METRICS",
    "TASK_METRICS_OF",
    "TASK_TYPES",
    "MetricUnit",
    "TaskMetrics",
    "log_metrics",
    "logger",
    "metrics",
    "redact",
    "task_metrics",
    "timed",
]

# The task types, each with the service (POWERTOOLS_SERVICE_NAME, template.yaml) of the one
# function that handles it. Task metrics carry the dimension set {service, task_type}: the
# dashboard, the alarms and GET /admin/metrics name them by these pairs.
TASK_TYPES: dict[str, str] = {
    "confirmation": "welcome-worker",
    "welcome": "welcome-worker",
    "newsletter_dispatch": "newsletter-dispatcher",
    "newsletter_fanout": "fanout",
    "newsletter": "newsletter-worker",
    "ses_event": "ses-events",
}

# Every metric recorded per task type, with its unit; TASK_METRICS_OF below says which task
# type emits which, and TaskMetrics.add refuses any other pair.
TASK_METRICS: dict[str, str] = {
    "TasksProcessed": MetricUnit.Count.value,  # tasks finished (whatever their mails' outcomes)
    "ProcessingTime": MetricUnit.Milliseconds.value,  # per task that ran (a newsletter task that raised has none)
    "TaskErrors": MetricUnit.Count.value,  # tasks whose handling raised (retried by SQS)
    "TasksRetried": MetricUnit.Count.value,  # tasks failed on purpose, to come again (not an error)
    "TasksDeadLettered": MetricUnit.Count.value,
    "MailsSent": MetricUnit.Count.value,
    "MailsFailed": MetricUnit.Count.value,  # permanent rejections, recorded failed
    "MailsRetried": MetricUnit.Count.value,  # handed back to the queue (transient errors, waits)
    "MailsThrottled": MetricUnit.Count.value,  # SES throttled the send; retried later
    "MailsUncertain": MetricUnit.Count.value,  # SES's answer was lost
    "MailsSkipped": MetricUnit.Count.value,
    "DuplicatesSuppressed": MetricUnit.Count.value,
    "TasksQueued": MetricUnit.Count.value,  # fan-out: newsletter tasks put on the queue
    "RecipientsQueued": MetricUnit.Count.value,
    "CampaignsStarted": MetricUnit.Count.value,  # dispatcher
    "SesDeliveries": MetricUnit.Count.value,
    "SesComplaints": MetricUnit.Count.value,
    "SubscribersSuppressed": MetricUnit.Count.value,
}


_EVERY_TASK = frozenset({"TasksProcessed", "ProcessingTime", "TaskErrors"})
_MAILS = frozenset(
    {"MailsSent", "MailsFailed", "MailsRetried", "MailsThrottled", "MailsUncertain", "MailsSkipped"}
    | {"DuplicatesSuppressed", "TasksDeadLettered"}
)
# Which task metrics each task type emits: TaskMetrics.add refuses the others, so an alarm or a
# graph on a pair nobody emits is caught (tests/unit/test_monitoring_template.py reads this).
# TasksDeadLettered: the tasks the code itself puts on a dead-letter queue (worker.DeadLetters);
# what SQS moves after maxReceiveCount (the SES events' included: SesEventsQueue's redrive), and
# the dispatcher's failed invocations (Lambda's OnFailure destination), are counted by the
# queues' own metrics.
TASK_METRICS_OF: dict[str, frozenset[str]] = {
    "confirmation": _EVERY_TASK | _MAILS,
    "welcome": _EVERY_TASK | _MAILS,
    "newsletter": _EVERY_TASK | _MAILS | {"TasksRetried"},  # not started in time, or handed back whole
    "newsletter_fanout": _EVERY_TASK | {"TasksDeadLettered", "TasksQueued", "RecipientsQueued"},
    "newsletter_dispatch": _EVERY_TASK | {"CampaignsStarted"},
    "ses_event": _EVERY_TASK | {"TasksRetried", "SesDeliveries", "SesComplaints", "SubscribersSuppressed"},
}


class TaskMetrics:
    """Metrics per task type: one EMF object per task type an invocation handled.

    Powertools gives one dimension set to all the metrics of an object; a function that
    handles two task types (the welcome worker: confirmations and welcomes) needs two. Each
    task type gets its own ``EphemeralMetrics`` with the default dimension ``task_type``
    (``service`` comes from the environment); :meth:`flush` prints them at the end of the
    invocation (:func:`log_metrics`).
    """

    def __init__(self) -> None:
        self._sets: dict[str, EphemeralMetrics] = {}

    def add(self, task_type: str, name: str, value: float) -> None:
        if name not in TASK_METRICS_OF.get(task_type, ()):
            raise ValueError(f"no task metric {name!r} for task type {task_type!r}")
        emf = self._sets.get(task_type)
        if emf is None:
            emf = self._sets[task_type] = EphemeralMetrics(namespace=metrics.namespace, service=metrics.service)
            emf.set_default_dimensions(task_type=task_type)
        emf.add_metric(name=name, unit=TASK_METRICS[name], value=value)

    def flush(self) -> None:
        for emf in self._sets.values():
            if emf.metric_set:
                emf.flush_metrics()


task_metrics = TaskMetrics()

# A worker's own Metrics object is often empty: its figures are task metrics. Powertools
# warns about an empty flush at the end of every such invocation; it is expected here.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def log_metrics(handler: Callable[..., Any]) -> Callable[..., Any]:
    """A handler's metrics: its own (and the cold start), then its task metrics, flushed at the
    end of every invocation, failed ones included."""

    @metrics.log_metrics(capture_cold_start_metric=True)
    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        try:
            return handler(event, context)
        finally:
            task_metrics.flush()

    return wrapper  # type: ignore[no-any-return]  # Powertools' decorator is untyped


@contextmanager
def timed(task_type: str, retry: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """One task of ``task_type``: how long it took (``ProcessingTime``, ms), and a ``TaskErrors``
    if it raised - or a ``TasksRetried`` if it raised one of ``retry``, the exceptions that only
    ask for the task to come again later."""
    started = time.perf_counter()
    try:
        yield
    except retry:
        task_metrics.add(task_type, "TasksRetried", 1)
        raise
    except Exception:
        task_metrics.add(task_type, "TaskErrors", 1)
        raise
    finally:
        task_metrics.add(task_type, "ProcessingTime", (time.perf_counter() - started) * 1000)
