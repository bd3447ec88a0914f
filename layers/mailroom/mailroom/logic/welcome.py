"""The welcome mail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mailroom.logic.delivery import Delivery, Sender, deliver_once
from mailroom.logic.ports import Ledger, MailSender, Subscribers
from mailroom.mail import render
from mailroom.models import Outcome, SubscriberStatus, WelcomeTask, utcnow

WELCOME_RUN = "welcome"


def send_welcome(
    task: WelcomeTask,
    subscribers: Subscribers,
    ledger: Ledger,
    mailer: MailSender,
    sender: Sender,
    clock: Callable[[], datetime] = utcnow,
) -> Delivery:
    """Render and send the welcome mail of one subscriber, at most once."""
    subscriber = subscribers.get(task.email)
    if subscriber is None or subscriber.id != task.subscriber_id or subscriber.status != SubscriberStatus.SUBSCRIBED:
        return Delivery(Outcome.SKIPPED)
    mail = render(
        "welcome",
        to=subscriber.email,
        context={"name": subscriber.name, "sender_name": sender.name},
        tags={"kind": "welcome", "subscriber": subscriber.id},
    )
    return deliver_once(ledger, mailer, sender, WELCOME_RUN, subscriber.id, mail, held=task.held, clock=clock)
