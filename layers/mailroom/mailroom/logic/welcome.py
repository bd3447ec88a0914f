"""The mails of the subscriber lifecycle: the confirmation (double opt-in) and the welcome."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mailroom.links import Links
from mailroom.logic.delivery import Delivery, Sender, deliver_once
from mailroom.logic.ports import Ledger, MailSender, Subscribers
from mailroom.mail import render
from mailroom.models import ConfirmationTask, Outcome, Subscriber, SubscriberStatus, WelcomeTask, utcnow

WELCOME_RUN = "welcome"
CONFIRMATION_RUN = "confirmation"
# A confirmation record holds no address and is removed (TTL) this long after its mail: the
# confirmation mail says an unconfirmed address is forgotten, and it is.
CONFIRMATION_RECORD_SECONDS = 30 * 24 * 3600


def _addressee(
    task: WelcomeTask | ConfirmationTask, subscribers: Subscribers, status: SubscriberStatus
) -> Subscriber | None:
    """The subscriber the task names, if it still is that subscriber in that state."""
    subscriber = subscribers.get(task.email)
    if subscriber is None or subscriber.id != task.subscriber_id or subscriber.status != status:
        return None
    return subscriber


def confirmation_key(subscriber_id: str, seq: int) -> str:
    """The ledger key of one confirmation mail (each request is its own mail)."""
    return f"{subscriber_id}#{seq}"


def send_welcome(
    task: WelcomeTask,
    subscribers: Subscribers,
    ledger: Ledger,
    mailer: MailSender,
    sender: Sender,
    links: Links,
    clock: Callable[[], datetime] = utcnow,
) -> Delivery:
    """Render and send the welcome mail of one confirmed subscriber, at most once; it carries
    the one-click unsubscribe headers like every newsletter."""
    subscriber = _addressee(task, subscribers, SubscriberStatus.SUBSCRIBED)
    if subscriber is None:
        return Delivery(Outcome.SKIPPED)
    unsubscribe_url = links.unsubscribe_url(subscriber.id)
    mail = render(
        "welcome",
        to=subscriber.email,
        context={"name": subscriber.name, "sender_name": sender.name, "unsubscribe_url": unsubscribe_url},
        tags={"kind": "welcome", "subscriber": subscriber.id},
        headers=links.unsubscribe_headers(unsubscribe_url),
    )
    return deliver_once(ledger, mailer, sender, WELCOME_RUN, subscriber.id, mail, held=task.held, clock=clock)


def send_confirmation(
    task: ConfirmationTask,
    subscribers: Subscribers,
    ledger: Ledger,
    mailer: MailSender,
    sender: Sender,
    links: Links,
    clock: Callable[[], datetime] = utcnow,
) -> Delivery:
    """Send one requested confirmation mail, at most once, while the subscriber is pending."""
    subscriber = _addressee(task, subscribers, SubscriberStatus.PENDING)
    if subscriber is None:
        return Delivery(Outcome.SKIPPED)
    mail = render(
        "confirmation",
        to=subscriber.email,
        context={
            "name": subscriber.name,
            "sender_name": sender.name,
            "confirm_url": links.confirm_url(subscriber.id),
            "valid_days": max(1, links.confirmation_seconds // 86400),
        },
        tags={"kind": "confirmation", "subscriber": subscriber.id, "seq": str(task.seq)},
    )
    key = confirmation_key(subscriber.id, task.seq)
    return deliver_once(
        ledger,
        mailer,
        sender,
        CONFIRMATION_RUN,
        key,
        mail,
        held=task.held,
        clock=clock,
        record_address=False,
        keep_seconds=CONFIRMATION_RECORD_SECONDS,
    )
