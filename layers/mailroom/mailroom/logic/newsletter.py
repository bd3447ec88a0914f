"""The newsletter: choosing the edition, fanning it out, sending one task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from mailroom.logic.delivery import Delivery, Sender, deliver_once
from mailroom.logic.ports import Ledger, MailSender, Queue, Subscribers
from mailroom.mail import render
from mailroom.models import NewsletterTask, Outcome, Recipient, ScheduleInvocation, utcnow
from mailroom.observability import logger

EDITION_PREFIX = "newsletter-"
TASKS_PER_FLUSH = 10  # one SendMessageBatch


def edition_for(invocation: ScheduleInvocation, timezone: str, now: Callable[[], datetime] = utcnow) -> str:
    """The edition a schedule firing sends: one per calendar day in the schedule's time zone.

    The id is derived from the *scheduled* time, so a retried or repeated firing on the
    same day names the same edition, and the ledger sends nobody that edition twice.
    """
    moment = invocation.scheduled_time or now()
    return f"{EDITION_PREFIX}{moment.astimezone(ZoneInfo(timezone)).date().isoformat()}"


def edition_date(edition: str) -> date:
    return date.fromisoformat(edition.removeprefix(EDITION_PREFIX))


@dataclass(frozen=True)
class FanOut:
    edition: str
    recipients: int
    tasks: int
    batch_calls: int


def fan_out(
    edition: str,
    subscribers: Subscribers,
    queue: Queue,
    recipients_per_task: int,
    page_size: int = 500,
    correlation_id: str | None = None,
) -> FanOut:
    """Page through the subscribers and queue tasks of ``recipients_per_task`` recipients each."""
    pending: list[str] = []
    current: list[Recipient] = []
    recipients = tasks = calls = 0

    def close_task() -> None:
        nonlocal current, tasks
        task = NewsletterTask(edition=edition, recipients=current, correlation_id=correlation_id)
        pending.append(task.model_dump_json(exclude_none=True))
        tasks += 1
        current = []

    for page in subscribers.iter_pages(page_size):
        for subscriber in page:
            current.append(Recipient(id=subscriber.id, email=subscriber.email, name=subscriber.name))
            recipients += 1
            if len(current) == recipients_per_task:
                close_task()
        if len(pending) >= TASKS_PER_FLUSH:
            calls += queue.send_batch(pending)
            pending = []
    if current:
        close_task()
    if pending:
        calls += queue.send_batch(pending)
    logger.info("newsletter fanned out", extra={"edition": edition, "recipients": recipients, "tasks": tasks})
    return FanOut(edition, recipients, tasks, calls)


def send_newsletter(
    task: NewsletterTask,
    ledger: Ledger,
    mailer: MailSender,
    sender: Sender,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Delivery]:
    """Send the edition to every recipient of one task, each at most once.

    Before each recipient it asks ``should_stop`` (the worker's time budget): once it says
    yes, the remaining recipients are not started and come back as ``RETRY``, so the task
    returns to the queue instead of being cut off by a Lambda timeout mid-send.
    """
    day = edition_date(task.edition)
    deliveries: list[Delivery] = []
    for position, recipient in enumerate(task.recipients):
        if should_stop():
            left = len(task.recipients) - position
            logger.warning("time budget spent; handing the rest back", extra={"edition": task.edition, "left": left})
            deliveries.extend([Delivery(Outcome.RETRY, error="the worker's time budget ran out")] * left)
            break
        mail = render(
            "newsletter",
            to=recipient.email,
            context={
                "name": recipient.name,
                "sender_name": sender.name,
                "edition_date": f"{day.day} {day:%B %Y}",
            },
            tags={"kind": "newsletter", "edition": task.edition, "subscriber": recipient.id},
        )
        deliveries.append(deliver_once(ledger, mailer, sender, task.edition, recipient.id, mail))
    return deliveries
