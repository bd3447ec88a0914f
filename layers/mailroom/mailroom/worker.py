"""What the queue workers share: counting outcomes as metrics, retrying through the queue with
backoff, dead-lettering with a reason, and the time budget that keeps a worker from being cut
off by its Lambda timeout."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from mailroom.logic.delivery import STALE_CLAIM_SECONDS
from mailroom.logic.ports import Queue
from mailroom.models import Outcome, iso, utcnow
from mailroom.observability import logger, task_metrics

# Stop starting sends when less than this is left: one SES call (2 s connect + 10 s read)
# plus recording its result must fit in what remains.
SAFETY_MARGIN_MS = 15_000


# Retries after transient failures (5xx, connections that failed before the request went
# out, configuration errors such as an unverified sender): the failure after the last of
# them (the 9th in all) sends the task to the dead-letter queue; with the backoff below that
# is about 8 minutes of trying. Throttling never counts: it only slows down.
MAX_SEND_FAILURES = 8
MAX_DELAY_SECONDS = 900  # SQS's limit for DelaySeconds


def retry_delay(attempt: int) -> int:
    """Backoff through the queue: 2 s, 4 s, 8 s, ... up to 15 minutes, with jitter."""
    base = min(MAX_DELAY_SECONDS, 2 ** min(attempt + 1, 10))
    return max(1, min(MAX_DELAY_SECONDS, int(base * random.uniform(0.75, 1.25))))  # noqa: S311 - jitter


@dataclass(frozen=True)
class Requeue:
    """How a task goes back on its queue: after ``delay_seconds``, with its new counters;
    ``dead``: its failures are used up, it goes to the dead-letter queue instead."""

    delay_seconds: int
    attempt: int
    failures: int
    dead: bool = False


def plan_retry(attempt: int, failures: int, *, throttled: bool = False, wait: bool = False) -> Requeue:
    """The next try of a task's mails: a wait for another attempt's claim, a throttle, or a failure."""
    if wait:
        return Requeue(min(MAX_DELAY_SECONDS, STALE_CLAIM_SECONDS), attempt, failures)
    if throttled:
        return Requeue(retry_delay(attempt), attempt + 1, failures)
    return Requeue(retry_delay(failures), attempt, failures + 1, dead=failures + 1 > MAX_SEND_FAILURES)


class DeadLetters:
    """Puts a task that cannot succeed on its dead-letter queue, with the reason as message
    attributes (``error``, ``failed_at``, ``source``) for the admin's dead-letter view.

    SQS's redrive policy (``maxReceiveCount``) stays the backstop for a task whose worker
    never finished (crashed or timed out every time): those arrive without a reason.
    """

    def __init__(self, queue: Queue, source: str, task_type: str) -> None:
        self.queue = queue
        self.source = source
        self.task_type = task_type  # of the tasks on the queue, for a task too malformed to tell

    def send(self, body: str, reason: str, task_type: str | None = None) -> None:
        self.queue.send(body, attributes={"error": reason[:1000], "failed_at": iso(utcnow()), "source": self.source})
        task_metrics.add(task_type or self.task_type, "TasksDeadLettered", 1)
        logger.error("task dead-lettered", extra={"reason": reason[:1000], "source": self.source})


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


def count_outcomes(task_type: str, counts: Mapping[Outcome, int], throttled: int = 0) -> None:
    """Emit one metric per outcome (and throttles) for a finished task of ``task_type``."""
    task_metrics.add(task_type, "TasksProcessed", 1)
    for outcome, name in _METRIC_OF.items():
        if counts.get(outcome):
            task_metrics.add(task_type, name, counts[outcome])
    if throttled:
        task_metrics.add(task_type, "MailsThrottled", throttled)
