"""The subscriber lifecycle: register (double opt-in), confirm, unsubscribe.

- ``register``: a new address is stored *pending* (it expires unless confirmed) and a
  confirmation mail is queued; a pending address gets the confirmation again, at most once
  per ``CONFIRMATION_RESEND_SECONDS``; an unsubscribed one becomes pending again (a new
  opt-in); a subscribed or suppressed one gets nothing. The caller answers the same in
  every case, so the API does not reveal who is subscribed.
- ``confirm``: pending -> subscribed, then the welcome mail is queued (once: the welcome
  ledger makes a repeated queueing harmless). A repeated confirmation changes nothing.
- ``unsubscribe``: subscribed or pending -> unsubscribed, at once; repeating it is harmless.
  Workers re-read each recipient before sending, so it holds for campaigns in flight.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from mailroom.logic.ports import Queue, SubscriberLifecycle
from mailroom.models import (
    ConfirmationTask,
    Registration,
    Subscriber,
    SubscriberSource,
    SubscriberStatus,
    WelcomeTask,
    iso,
    utcnow,
)
from mailroom.observability import logger

# A repeated registration of a pending address re-sends the confirmation at most this often,
# and at most CONFIRMATION_LIMIT are ever sent to one subscriber (nobody can use the sign-up
# form to mail somebody else without end). A confirmation requested but not marked queued
# yet is either on its way (a double click: the other request marks it within milliseconds)
# or lost (that request died): a registration watches it for CONFIRMATION_STALE_SECONDS,
# polling every CONFIRMATION_POLL_SECONDS, and requests a new one only if it stays unmarked.
CONFIRMATION_RESEND_SECONDS = 300
CONFIRMATION_STALE_SECONDS = 1.0
CONFIRMATION_POLL_SECONDS = 0.25
CONFIRMATION_LIMIT = 10


def pending_expiry(now: datetime, confirmation_days: int) -> int:
    """When a pending subscriber requested ``now`` disappears unconfirmed (the TTL, epoch seconds)."""
    return int((now + timedelta(days=confirmation_days)).timestamp())


def pending_subscriber(
    subscriber_id: str,
    email: str,
    name: str | None,
    now: datetime,
    confirmation_days: int,
    source: SubscriberSource = SubscriberSource.SIGNUP,
    consent: str | None = None,
) -> Subscriber:
    """A new subscriber awaiting confirmation, its first confirmation mail requested ``now``
    (registration and import both make them)."""
    return Subscriber(
        id=subscriber_id,
        email=email,
        name=name,
        consent=consent,
        status=SubscriberStatus.PENDING,
        created_at=iso(now),
        source=source,
        confirmations=1,
        confirmation_sent_at=iso(now),
        expires_at=pending_expiry(now, confirmation_days),
    )


class RegistrationConflict(Exception):
    """The address changed hands while we registered it; the caller may simply retry."""


class Registered(StrEnum):
    """What a registration did (for logs and metrics only; the API answers the same)."""

    NEW = "new"  # stored pending, confirmation queued
    RESENT = "resent"  # pending or unsubscribed: the confirmation queued again
    LIMITED = "limited"  # pending, a confirmation was sent moments ago: nothing sent
    KNOWN = "known"  # subscribed or suppressed: nothing sent


@dataclass(frozen=True)
class Lifecycle:
    subscribers: SubscriberLifecycle
    welcome_queue: Queue  # welcome and confirmation mails
    confirmation_days: int = 7
    clock: Callable[[], datetime] = utcnow
    new_id: Callable[[], str] = lambda: str(uuid.uuid4())
    sleep: Callable[[float], None] = time.sleep

    def _expires_at(self, now: datetime) -> int:
        return pending_expiry(now, self.confirmation_days)

    # -- registration ---------------------------------------------------------------------
    def register(self, request: Registration, correlation_id: str | None = None) -> Registered:
        now = self.clock()
        candidate = pending_subscriber(
            self.new_id(), request.email, request.name, now, self.confirmation_days, consent=request.consent
        )
        if self.subscribers.create(candidate):
            try:
                self._queue_confirmation(candidate, 1, correlation_id)
            except Exception:
                self.subscribers.delete(candidate.email, candidate.id)  # nothing half-written
                raise
            return Registered.NEW
        existing = self.subscribers.get(request.email)
        if existing is None:
            raise RegistrationConflict("the address was erased or expired while it registered")
        if existing.status in (SubscriberStatus.SUBSCRIBED, SubscriberStatus.SUPPRESSED):
            return Registered.KNOWN
        if existing.status is SubscriberStatus.UNSUBSCRIBED and not self.subscribers.resubscribe(
            existing.email, existing.id, self._expires_at(now), request.name, request.consent
        ):
            raise RegistrationConflict("the subscriber changed while it registered again")
        seq = self._request_confirmation(existing)
        polls = round(CONFIRMATION_STALE_SECONDS / CONFIRMATION_POLL_SECONDS) + 1
        for _ in range(polls):
            if seq is not None:
                break
            current = self.subscribers.get(existing.email)
            if (
                current is None
                or current.id != existing.id
                or current.status is not SubscriberStatus.PENDING
                or current.confirmations_queued >= current.confirmations
            ):
                return Registered.LIMITED  # the last one reached the queue: the resend limit holds
            self.sleep(CONFIRMATION_POLL_SECONDS)  # one is on its way, or its request died: watch it
            seq = self._request_confirmation(existing)
        if seq is None:
            return Registered.LIMITED
        # If queueing fails, the count stays ahead of the queued count: the next registration
        # may request it again (the resend limit counts only what reached the queue).
        self._queue_confirmation(existing, seq, correlation_id)
        return Registered.RESENT

    def _request_confirmation(self, subscriber: Subscriber) -> int | None:
        now = self.clock()
        return self.subscribers.request_confirmation(
            subscriber.email,
            subscriber.id,
            now=iso(now),
            resend_after=iso(now - timedelta(seconds=CONFIRMATION_RESEND_SECONDS)),
            stale_after=iso(now - timedelta(seconds=CONFIRMATION_STALE_SECONDS)),
            expires_at=self._expires_at(now),
            limit=CONFIRMATION_LIMIT,
        )

    def _queue_confirmation(self, subscriber: Subscriber, seq: int, correlation_id: str | None) -> None:
        task = ConfirmationTask(
            subscriber_id=subscriber.id, email=subscriber.email, seq=seq, correlation_id=correlation_id
        )
        self.welcome_queue.send(task.model_dump_json(exclude_none=True))
        try:
            self.subscribers.mark_confirmation_queued(subscriber.email, subscriber.id, seq)
        except Exception:
            # Queued: the registration succeeded. Unmarked, a repeated registration may queue
            # another confirmation mail within the resend window; nothing is lost.
            logger.exception("confirmation queued but not marked", extra={"subscriber_id": subscriber.id})
        logger.info("confirmation queued", extra={"subscriber_id": subscriber.id, "seq": seq})

    # -- confirmation ---------------------------------------------------------------------
    def confirm(self, subscriber_id: str, correlation_id: str | None = None) -> Subscriber | None:
        """Confirm the subscriber a valid confirmation link names; None if there is none
        (expired pending subscribers are gone). Returns the subscriber as it now is."""
        subscriber = self.subscribers.find_by_id(subscriber_id)
        if subscriber is None:
            return None
        if subscriber.status is SubscriberStatus.PENDING:
            if self.subscribers.confirm(subscriber.email, subscriber.id, iso(self.clock())):
                logger.info("subscription confirmed", extra={"subscriber_id": subscriber.id})
            subscriber = self.subscribers.get(subscriber.email)
            if subscriber is None or subscriber.id != subscriber_id:
                return None
        if subscriber.status is SubscriberStatus.SUBSCRIBED and not subscriber.welcome_queued:
            # First confirmation, or a repeat after one that died before queueing the welcome.
            task = WelcomeTask(subscriber_id=subscriber.id, email=subscriber.email, correlation_id=correlation_id)
            self.welcome_queue.send(task.model_dump_json(exclude_none=True))
            try:
                self.subscribers.mark_welcome_queued(subscriber.email, subscriber.id)
            except Exception:
                # Unmarked, a repeated confirmation queues it again; the welcome ledger sends one mail.
                logger.exception("welcome task queued but not marked", extra={"subscriber_id": subscriber.id})
            logger.info("welcome task queued", extra={"subscriber_id": subscriber.id})
        return subscriber

    # -- unsubscribing --------------------------------------------------------------------
    def unsubscribe(self, subscriber_id: str) -> bool:
        """Unsubscribe the subscriber an unsubscribe link names. True if this call changed
        anything; an unknown (erased) or already unsubscribed subscriber is no error."""
        subscriber = self.subscribers.find_by_id(subscriber_id)
        if subscriber is None:
            return False
        changed = self.subscribers.unsubscribe(subscriber.email, subscriber.id, iso(self.clock()))
        if changed:
            logger.info("unsubscribed", extra={"subscriber_id": subscriber.id})
        return changed
