"""Registration: store the subscriber once, queue the welcome mail once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from mailroom.logic.ports import Queue, Subscribers
from mailroom.models import Registration, Subscriber, WelcomeTask, iso, utcnow
from mailroom.observability import logger


@dataclass(frozen=True)
class Registered:
    subscriber_id: str
    status: str
    created: bool


class RegistrationConflict(Exception):
    """The address changed hands while we registered it; the caller may simply retry."""


def register(
    request: Registration,
    subscribers: Subscribers,
    welcome_queue: Queue,
    correlation_id: str | None = None,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    clock: Callable[[], str] = lambda: iso(utcnow()),
) -> Registered:
    """Store the subscriber (if new) and put its welcome task on the queue.

    - A new address: a subscriber is written (conditional put), then the welcome task is
      queued, then the subscriber is marked ``welcome_queued``. If the queue refuses the
      task, the new subscriber is deleted again and the error raised: nothing half-written.
    - A known address: no second subscriber. The welcome task is queued again only if the
      first registration never got as far as marking it queued (a crash in between); the
      welcome worker's ledger makes sure that at most one welcome mail goes out.
    """
    candidate = Subscriber(id=new_id(), email=request.email, name=request.name, created_at=clock())
    created = subscribers.create(candidate)
    subscriber = candidate if created else subscribers.get(request.email)
    if subscriber is None:
        raise RegistrationConflict("the address was erased while it registered")
    if subscriber.welcome_queued:
        return Registered(subscriber.id, subscriber.status.value, created=False)

    task = WelcomeTask(subscriber_id=subscriber.id, email=subscriber.email, correlation_id=correlation_id)
    try:
        welcome_queue.send(task.model_dump_json(exclude_none=True))
    except Exception:
        if created:
            subscribers.delete(subscriber.email, subscriber.id)
        raise
    try:
        subscribers.mark_welcome_queued(subscriber.email, subscriber.id)
    except Exception:
        # The task is queued, so the registration has succeeded. Unmarked, a repeated
        # registration queues the task again, and the welcome ledger sends one mail.
        logger.exception("welcome task queued but not marked", extra={"subscriber_id": subscriber.id})
    logger.info("welcome task queued", extra={"subscriber_id": subscriber.id, "new_subscriber": created})
    return Registered(subscriber.id, subscriber.status.value, created=created)
