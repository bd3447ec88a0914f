"""Sending one mail at most once: claim, send, record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailroom.errors import PermanentSendError, RetryableSendError, UncertainSendError
from mailroom.logic.ports import Ledger, MailSender
from mailroom.mail import to_mime
from mailroom.models import Mail, Outcome, iso, utcnow
from mailroom.observability import logger


@dataclass(frozen=True)
class Sender:
    address: str
    name: str


@dataclass(frozen=True)
class Delivery:
    outcome: Outcome
    message_id: str | None = None
    error: str | None = None
    throttled: bool = False


def deliver_once(
    ledger: Ledger,
    mailer: MailSender,
    sender: Sender,
    run: str,
    subscriber_id: str,
    mail: Mail,
    clock: Callable[[], str] = lambda: iso(utcnow()),
) -> Delivery:
    """Send ``mail`` unless this (run, subscriber) was already claimed.

    0. build the MIME message (anything that can fail before the send fails here, unclaimed);
    1. claim the ledger record with a conditional write (fails if sent, failed or in flight);
    2. send through SES (one attempt);
    3. record the outcome: ``sent`` with the message id; ``failed`` with the reason;
       ``released`` (a transient error gives the claim back so a later delivery can send);
       or ``uncertain`` (the answer was lost, SES may have sent it: never sent again).

    A crash between 1 and 3 leaves the record ``sending``: the mail is then never sent
    again (at most once) - the residual window docs/architecture.md describes.
    """
    raw = to_mime(mail, sender.address, sender.name)
    context = {"run": run, "subscriber_id": subscriber_id}
    if not ledger.claim(run, subscriber_id, clock()):
        logger.info("already claimed, not sending again", extra=context)
        return Delivery(Outcome.DUPLICATE)
    try:
        message_id = mailer.send(raw, sender.address, mail.to, mail.tags)
    except PermanentSendError as exc:
        ledger.record_failed(run, subscriber_id, str(exc), clock())
        logger.warning("mail failed permanently", extra={**context, "error": str(exc)})
        return Delivery(Outcome.FAILED, error=str(exc))
    except UncertainSendError as exc:
        ledger.record_uncertain(run, subscriber_id, str(exc), clock())
        logger.error("mail may or may not have been sent; not sending again", extra={**context, "error": str(exc)})
        return Delivery(Outcome.UNCERTAIN, error=str(exc))
    except RetryableSendError as exc:
        ledger.release(run, subscriber_id, str(exc), clock())
        logger.info("mail deferred", extra={**context, "error": str(exc)})
        return Delivery(Outcome.RETRY, error=str(exc), throttled=exc.throttled)
    except Exception as exc:
        ledger.release(run, subscriber_id, f"{type(exc).__name__}: {exc}", clock())
        raise
    try:
        ledger.record_sent(run, subscriber_id, message_id, clock())
    except Exception:
        # The mail is out; the record stays "sending", which still blocks a second send.
        logger.exception("sent, but the result could not be recorded", extra={**context, "message_id": message_id})
    return Delivery(Outcome.SENT, message_id=message_id)
