"""What the queue workers share: counting outcomes as metrics, turning retries into batch failures,
and the time budget that keeps a worker from being cut off by its Lambda timeout."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mailroom.errors import TaskRetry
from mailroom.logic.delivery import Delivery
from mailroom.models import Outcome
from mailroom.observability import MetricUnit, metrics

# Stop starting sends when less than this is left: one SES call (2 s connect + 10 s read)
# plus recording its result must fit in what remains.
SAFETY_MARGIN_MS = 15_000


class HasRemainingTime(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True)
class Budget:
    """The time an invocation may still start work in: until ``deadline`` (``time.monotonic``)."""

    deadline: float

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    @classmethod
    def of(cls, context: HasRemainingTime | None, margin_ms: int = SAFETY_MARGIN_MS) -> Budget:
        if context is None:
            return cls(float("inf"))
        return cls(time.monotonic() + (context.get_remaining_time_in_millis() - margin_ms) / 1000)


_METRIC_OF = {
    Outcome.SENT: "MailsSent",
    Outcome.FAILED: "MailsFailed",
    Outcome.RETRY: "MailsRetried",
    Outcome.DUPLICATE: "DuplicatesSuppressed",
    Outcome.SKIPPED: "MailsSkipped",
    Outcome.UNCERTAIN: "MailsUncertain",
}


def count_outcomes(counts: Mapping[Outcome, int], throttled: int = 0) -> None:
    """Emit one metric per outcome (and throttles) for a task."""
    metrics.add_metric(name="TasksProcessed", unit=MetricUnit.Count, value=1)
    for outcome, name in _METRIC_OF.items():
        if counts.get(outcome):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=counts[outcome])
    if throttled:
        metrics.add_metric(name="MailsThrottled", unit=MetricUnit.Count, value=throttled)


def raise_if_retry(deliveries: Sequence[Delivery]) -> None:
    """Fail the record (so SQS redelivers it) if any of its mails must be retried."""
    retries = [delivery for delivery in deliveries if delivery.outcome is Outcome.RETRY]
    if retries:
        metrics.add_metric(name="TaskErrors", unit=MetricUnit.Count, value=1)
        raise TaskRetry(f"{len(retries)} mail(s) deferred: {retries[0].error}")
