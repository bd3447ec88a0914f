"""Sending one mail at most once: claim, send, record."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from mailroom.errors import PermanentSendError, RetryableSendError, UncertainSendError
from mailroom.logic.ports import Ledger, MailSender
from mailroom.mail import to_mime
from mailroom.models import DeliveryStatus, Mail, Outcome, iso, utcnow
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
    # RETRY only: a claim of ours known not to have been sent (the next attempt may take it
    # over), and whether the retry is a wait for another attempt's claim (not a failure).
    held: str | None = None
    wait: bool = False


# A Lambda invocation lasts at most 15 minutes: a claim older than that belongs to no live attempt.
STALE_CLAIM_SECONDS = 900
STALE_CLAIM_ERROR = "the attempt that claimed it stopped before recording a result; it may have been sent"


def claim_age(record: dict[str, object], now: datetime) -> float:
    claimed_at = str(record.get("claimed_at") or "")
    try:
        return (now - datetime.fromisoformat(claimed_at.replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        return float("inf")


class ClaimedBy(Enum):
    """Who holds a record this attempt could not claim."""

    NOBODY = "nobody"  # resolved already (sent, failed, skipped, uncertain), or a stale claim without a token
    LIVE = "live"  # claimed within STALE_CLAIM_SECONDS: maybe still being sent, look again later
    GONE = "gone"  # claimed longer ago by an attempt that no longer lives: resolve it uncertain


def claimed_by(record: dict[str, object] | None, now: datetime) -> ClaimedBy:
    if not record or record.get("status") != DeliveryStatus.SENDING.value:
        return ClaimedBy.NOBODY
    if claim_age(record, now) < STALE_CLAIM_SECONDS:
        return ClaimedBy.LIVE
    return ClaimedBy.GONE if record.get("claim") else ClaimedBy.NOBODY


def deliver_once(
    ledger: Ledger,
    mailer: MailSender,
    sender: Sender,
    run: str,
    subscriber_id: str,
    mail: Mail,
    held: str | None = None,
    clock: Callable[[], datetime] = utcnow,
    record_address: bool = True,
    keep_seconds: int | None = None,
) -> Delivery:
    """Send ``mail`` unless this (run, subscriber) was already claimed. The record keeps the
    recipient's address unless ``record_address`` is False, and expires ``keep_seconds``
    after the claim if that is given.

    0. build the MIME message (anything that can fail before the send fails here, unclaimed);
    1. claim the ledger record under a new token with a conditional write (refused if it is
       sent, failed, uncertain or claimed by another attempt - unless that claim is ``held``,
       ours from an earlier attempt and known not to have been sent);
    2. send through SES (one attempt);
    3. record the outcome: ``sent`` with the message id; ``failed`` with the reason;
       ``released`` (a transient error gives the claim back so a later delivery can send);
       or ``uncertain`` (the answer was lost, SES may have sent it: never sent again).

    A record found claimed by another attempt is waited for (RETRY with ``wait``) until
    the claim is older than ``STALE_CLAIM_SECONDS``; then that attempt is gone - it died
    between its claim and its record, the residual window of docs/guarantees.md - and the
    record becomes ``uncertain``: the mail may have gone out, so it is never sent again.
    """
    raw = to_mime(mail, sender.address, sender.name)
    context = {"run": run, "subscriber_id": subscriber_id}
    token = uuid.uuid4().hex

    def now() -> str:
        return iso(clock())

    try:
        claimed, record = ledger.claim(
            run,
            subscriber_id,
            token,
            now(),
            email=mail.to if record_address else None,
            held=held,
            expires_at=None if keep_seconds is None else int(clock().timestamp()) + keep_seconds,
        )
    except Exception as exc:
        # Whether the claim was written is unknown; nothing was sent under it: hand it on.
        logger.warning("claim not confirmed; retrying later", extra={**context, "error": str(exc)})
        return Delivery(Outcome.RETRY, error=f"claim not confirmed: {type(exc).__name__}: {exc}", held=token)
    if not claimed:
        return _claimed_elsewhere(ledger, run, subscriber_id, record, clock, context)
    return _send_claimed(ledger, mailer, sender, run, subscriber_id, mail, raw, token, now, context)


def _send_claimed(
    ledger: Ledger,
    mailer: MailSender,
    sender: Sender,
    run: str,
    subscriber_id: str,
    mail: Mail,
    raw: bytes,
    token: str,
    now: Callable[[], str],
    context: dict[str, str],
) -> Delivery:
    try:
        message_id = mailer.send(raw, sender.address, mail.to, mail.tags)
    except PermanentSendError as exc:
        ledger.record_failed(run, subscriber_id, token, str(exc), now())
        logger.warning("mail failed permanently", extra={**context, "error": str(exc)})
        return Delivery(Outcome.FAILED, error=str(exc))
    except UncertainSendError as exc:
        ledger.record_uncertain(run, subscriber_id, token, str(exc), now())
        logger.error("mail may or may not have been sent; not sending again", extra={**context, "error": str(exc)})
        return Delivery(Outcome.UNCERTAIN, error=str(exc))
    except RetryableSendError as exc:
        try:
            ledger.release(run, subscriber_id, token, str(exc), now())
        except Exception:
            logger.exception("claim not released; the retry takes it over", extra=context)
            return Delivery(Outcome.RETRY, error=str(exc), throttled=exc.throttled, held=token)
        logger.info("mail deferred", extra={**context, "error": str(exc)})
        return Delivery(Outcome.RETRY, error=str(exc), throttled=exc.throttled)
    except Exception as exc:
        # Not an error the mailer classified: whether SES got the mail is unknown.
        error = f"{type(exc).__name__}: {exc}"
        ledger.record_uncertain(run, subscriber_id, token, error, now())
        logger.exception("unexpected error while sending; not sending again", extra=context)
        return Delivery(Outcome.UNCERTAIN, error=error)
    try:
        ledger.record_sent(run, subscriber_id, token, message_id, now())
    except Exception:
        # The mail is out; the record stays "sending", which still blocks a second send.
        logger.exception("sent, but the result could not be recorded", extra={**context, "message_id": message_id})
    return Delivery(Outcome.SENT, message_id=message_id)


def _claimed_elsewhere(
    ledger: Ledger,
    run: str,
    subscriber_id: str,
    record: dict[str, object] | None,
    clock: Callable[[], datetime],
    context: dict[str, str],
) -> Delivery:
    holder = claimed_by(record, clock())
    if holder is ClaimedBy.NOBODY:
        logger.info("already done, not sending again", extra=context)
        return Delivery(Outcome.DUPLICATE)
    if holder is ClaimedBy.LIVE:
        return Delivery(Outcome.RETRY, error="claimed by another attempt", wait=True)
    claim = str((record or {}).get("claim"))
    if ledger.record_uncertain(run, subscriber_id, claim, STALE_CLAIM_ERROR, iso(clock())):
        logger.error("stale claim: recorded uncertain, not sending again", extra=context)
        return Delivery(Outcome.UNCERTAIN, error=STALE_CLAIM_ERROR)
    return Delivery(Outcome.DUPLICATE)
