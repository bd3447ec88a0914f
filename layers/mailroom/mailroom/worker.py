"""What the queue workers share: counting outcomes as metrics, turning retries into batch failures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from mailroom.errors import TaskRetry
from mailroom.logic.delivery import Delivery
from mailroom.models import Outcome
from mailroom.observability import MetricUnit, metrics

_METRIC_OF = {
    Outcome.SENT: "MailsSent",
    Outcome.FAILED: "MailsFailed",
    Outcome.RETRY: "MailsRetried",
    Outcome.DUPLICATE: "DuplicatesSuppressed",
    Outcome.SKIPPED: "MailsSkipped",
}


def count_deliveries(deliveries: Sequence[Delivery]) -> dict[str, int]:
    """Emit one metric per outcome (and throttles) for a task; returns the counts."""
    counts = Counter(delivery.outcome.value for delivery in deliveries)
    throttled = sum(1 for delivery in deliveries if delivery.throttled)
    metrics.add_metric(name="TasksProcessed", unit=MetricUnit.Count, value=1)
    for outcome, name in _METRIC_OF.items():
        if counts[outcome.value]:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=counts[outcome.value])
    if throttled:
        metrics.add_metric(name="MailsThrottled", unit=MetricUnit.Count, value=throttled)
    return dict(counts)


def raise_if_retry(deliveries: Sequence[Delivery]) -> None:
    """Fail the record (so SQS redelivers it) if any of its mails must be retried."""
    retries = [delivery for delivery in deliveries if delivery.outcome is Outcome.RETRY]
    if retries:
        metrics.add_metric(name="TaskErrors", unit=MetricUnit.Count, value=1)
        raise TaskRetry(f"{len(retries)} mail(s) deferred: {retries[0].error}")
