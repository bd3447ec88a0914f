"""SES feedback: the configuration set's delivery, bounce and complaint events.

SES publishes an event per mail and recipient to EventBridge (``source`` ``aws.ses``,
``detail-type`` "Email Delivered", "Email Bounced", ...). The mail's tags (``kind``,
``campaign``, ``subscriber``, ``seq``; every tag value a list of strings) name the result
record the event belongs to. What each event does:

* **Delivery**: the record gets ``delivered_at``; a campaign's ``delivered`` counter goes up.
* **Bounce**: the record gets the bounce's type, subtype and time; ``bounced`` goes up. A
  ``Permanent`` bounce suppresses the subscriber; a ``Transient`` or ``Undetermined`` one
  adds one to its ``soft_bounces``.
* **Complaint**: the record gets ``complained_at`` and the feedback type; ``complained``
  goes up; the subscriber is suppressed.
* anything else (Send, Reject, DeliveryDelay, Rendering Failure, ...): logged, ignored.

Events arrive at least once, and SES may publish one twice: each event is recorded on its
record under a key of its own (the bounce's or complaint's ``feedbackId``, a delivery's
time), and a write is conditioned on that key not being there yet, so a repeated event
changes nothing and counts nothing. A counter goes up only with the *first* event of its
kind on a record, in the same transaction. Events come in batches (``apply_batch``): each
is judged on its own, and one event's failure (its record still being sent, an AWS error)
is that event's alone. Suppression is conditioned on the subscriber's
id (an erased address may have been registered again by someone else) and on not being
suppressed yet. Nothing here stores or logs an address: the event's addresses only find
the subscriber's item (its key).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mailroom.errors import MailroomError
from mailroom.models import iso, normalize_email, utcnow
from mailroom.observability import logger

# The event types SES names in ``detail.eventType``, and the detail-types EventBridge carries them under.
DELIVERY, BOUNCE, COMPLAINT = "Delivery", "Bounce", "Complaint"
DETAIL_TYPES = {
    "Email Sent": "Send",
    "Email Delivered": DELIVERY,
    "Email Bounced": BOUNCE,
    "Email Complaint Received": COMPLAINT,
    "Email Rejected": "Reject",
    "Email Delivery Delayed": "DeliveryDelay",
    "Email Rendering Failed": "Rendering Failure",
}
HARD_BOUNCE = "Permanent"  # Transient and Undetermined are soft

# Tag values Mailroom sets are ids: anything else cannot name one of its records.
_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,200}")
_SEQ = re.compile(r"[0-9]{1,9}")


class InvalidFeedback(MailroomError):
    """The event is not an SES event Mailroom can read; the message says why (never an address)."""


class _Lenient(BaseModel):
    """SES adds fields to its events now and then: unknown ones are ignored, never an error."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class SesMail(_Lenient):
    message_id: str = Field(alias="messageId", min_length=1, max_length=500)
    destination: list[str] = Field(default_factory=list)
    tags: dict[str, list[str]] = Field(default_factory=dict)

    def tag(self, name: str) -> str | None:
        values = self.tags.get(name) or []
        return values[0] if values else None


class SesRecipient(_Lenient):
    email_address: str = Field(alias="emailAddress")


class SesBounce(_Lenient):
    bounce_type: str = Field(alias="bounceType", min_length=1, max_length=50)
    bounce_sub_type: str = Field(default="", alias="bounceSubType", max_length=100)
    bounced_recipients: list[SesRecipient] = Field(default_factory=list, alias="bouncedRecipients")
    timestamp: datetime
    feedback_id: str = Field(alias="feedbackId", min_length=1, max_length=500)


class SesComplaint(_Lenient):
    complained_recipients: list[SesRecipient] = Field(default_factory=list, alias="complainedRecipients")
    timestamp: datetime
    feedback_id: str = Field(alias="feedbackId", min_length=1, max_length=500)
    complaint_feedback_type: str | None = Field(default=None, alias="complaintFeedbackType", max_length=100)


class SesDelivery(_Lenient):
    timestamp: datetime


class SesEventDetail(_Lenient):
    event_type: str | None = Field(default=None, alias="eventType")
    mail: SesMail
    bounce: SesBounce | None = None
    complaint: SesComplaint | None = None
    delivery: SesDelivery | None = None


class SesEvent(_Lenient):
    """An SES event as EventBridge delivers it (the envelope and SES's ``detail``)."""

    id: str | None = None
    source: Literal["aws.ses"]
    detail_type: str = Field(alias="detail-type")
    detail: SesEventDetail

    @property
    def event_type(self) -> str:
        return self.detail.event_type or DETAIL_TYPES.get(self.detail_type, self.detail_type)

    @model_validator(mode="after")
    def _has_its_object(self) -> SesEvent:
        needed = {DELIVERY: self.detail.delivery, BOUNCE: self.detail.bounce, COMPLAINT: self.detail.complaint}
        if self.event_type in needed and needed[self.event_type] is None:
            raise ValueError(f"a {self.event_type} event without its {self.event_type.lower()} object")
        return self


def parse_event(event: object) -> SesEvent:
    """The SES event in an EventBridge event; InvalidFeedback (with where and what, no values) if it is none."""
    if not isinstance(event, Mapping):
        raise InvalidFeedback(f"not an EventBridge event object but {type(event).__name__}")
    try:
        return SesEvent.model_validate(event)
    except ValidationError as exc:
        # Only where and what: the input may hold addresses, which are never logged.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'event'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False, include_context=False)[:5]
        )
        raise InvalidFeedback(problems) from None


@dataclass(frozen=True)
class MailRef:
    """The result record a mail's tags name."""

    pk: str
    sk: str
    subscriber_id: str
    campaign_id: str | None = None


def mail_ref(mail: SesMail) -> MailRef | None:
    """The record of a welcome, campaign or confirmation mail; None for any other mail (a test copy)."""
    kind, subscriber = mail.tag("kind"), mail.tag("subscriber")
    campaign, seq = mail.tag("campaign") or "", mail.tag("seq") or ""
    if subscriber is None or not _ID.fullmatch(subscriber):
        return None
    if kind == "welcome":
        return MailRef("welcome", subscriber, subscriber)
    if kind == "campaign" and _ID.fullmatch(campaign):
        return MailRef(f"campaign#{campaign}", subscriber, subscriber, campaign)
    if kind == "confirmation" and _SEQ.fullmatch(seq):
        return MailRef("confirmation", f"{subscriber}#{seq}", subscriber)
    return None


@dataclass(frozen=True)
class RecordChange:
    """What one event writes on its record.

    ``key`` identifies the event (a repeat finds it and changes nothing); ``marker`` is the
    attribute the first event of its kind sets (e.g. ``delivered_at``) - only then does
    ``counter`` go up; ``values`` are set by every event of the kind (the latest wins);
    ``soft_bounce_of`` is the address of the subscriber whose ``soft_bounces`` go up with it.
    """

    key: str
    message_id: str
    marker: str
    marker_value: str
    counter: str
    values: dict[str, str] = field(default_factory=dict)
    soft_bounce_of: str | None = None


class Recorded(StrEnum):
    FIRST = "recorded"  # the first event of its kind on the record (counted)
    AGAIN = "recorded again"  # another event of a kind already recorded (not counted)
    DUPLICATE = "duplicate"  # this very event was recorded before: nothing changed
    NO_RECORD = "no record"  # the tags name no record (erased, or never claimed)
    OTHER_MAIL = "other mail"  # the record belongs to another SES message


@dataclass(frozen=True)
class RecordResult:
    recorded: Recorded
    counted: bool = False  # a campaign counter went up with it
    soft_bounce_counted: bool = False  # False too when the subscriber is gone or another one


class FeedbackStore(Protocol):
    def record_batch(self, entries: Sequence[tuple[MailRef, RecordChange]]) -> list[RecordResult | Exception]: ...
    def suppress(self, email: str, subscriber_id: str, reason: str, at: str) -> bool: ...


@dataclass(frozen=True)
class Feedback:
    """What one event did; ``summary()`` is the handler's answer (no addresses)."""

    event_type: str
    outcome: str
    counted: bool = False
    suppressed: int = 0
    bounce: Literal["hard", "soft"] | None = None
    soft_bounce_counted: bool = False

    @property
    def new(self) -> bool:
        """Seen for the first time (not a repeat of an event already recorded)."""
        return self.outcome not in (Recorded.DUPLICATE, "ignored")

    def summary(self) -> dict[str, Any]:
        return {
            "event": self.event_type,
            "outcome": self.outcome,
            "counted": self.counted,
            "suppressed": self.suppressed,
            "bounce": self.bounce,
            "soft_bounce_counted": self.soft_bounce_counted,
        }


def _addresses(recipients: list[SesRecipient], destination: list[str]) -> list[str]:
    """The normalized addresses an event is about (its recipients, else the mail's destination)."""
    raw = [r.email_address for r in recipients] or destination
    found: list[str] = []
    for value in raw:
        try:
            address = normalize_email(parseaddr(value)[1] or value)
        except ValueError:
            logger.warning("an SES event names a recipient that is not a valid address; skipped")
            continue
        if address not in found:
            found.append(address)
    return found


@dataclass(frozen=True)
class Meaning:
    """What one event asks for, before anything is read or written (``change`` None: nothing to record)."""

    event_type: str
    ref: MailRef | None = None
    change: RecordChange | None = None
    suppress_reason: str | None = None
    addresses: tuple[str, ...] = ()
    bounce: Literal["hard", "soft"] | None = None


def interpret(event: SesEvent) -> Meaning:
    """The record change, the suppression and the soft bounce one SES event asks for."""
    kind = event.event_type
    detail = event.detail
    mail = detail.mail
    ref = mail_ref(mail)
    if kind not in (DELIVERY, BOUNCE, COMPLAINT):
        logger.debug("SES event ignored: nothing to record for its type", extra={"event_type": kind})
        return Meaning(kind)
    if ref is None:
        logger.debug("SES event ignored: its mail's tags name no result record", extra={"event_type": kind})
        return Meaning(kind)
    if detail.delivery is not None and kind == DELIVERY:
        change = RecordChange(
            key=f"delivery:{iso(detail.delivery.timestamp)}",
            message_id=mail.message_id,
            marker="delivered_at",
            marker_value=iso(detail.delivery.timestamp),
            counter="delivered",
        )
        return Meaning(kind, ref, change)
    if detail.bounce is not None and kind == BOUNCE:
        b = detail.bounce
        bounce: Literal["hard", "soft"] = "hard" if b.bounce_type == HARD_BOUNCE else "soft"
        addresses = _addresses(b.bounced_recipients, mail.destination)
        subtype = b.bounce_sub_type or "Undetermined"
        change = RecordChange(
            key=f"bounce:{b.feedback_id}",
            message_id=mail.message_id,
            marker="bounced_at",
            marker_value=iso(b.timestamp),
            counter="bounced",
            values={"bounce_type": b.bounce_type, "bounce_subtype": subtype, "last_bounce_at": iso(b.timestamp)},
            # one mail, one recipient: Mailroom never addresses a mail to two subscribers
            soft_bounce_of=addresses[0] if bounce == "soft" and addresses else None,
        )
        reason = f"bounce: {b.bounce_type}/{subtype}" if bounce == "hard" else None
        return Meaning(kind, ref, change, reason, tuple(addresses), bounce)
    assert detail.complaint is not None  # the model checked that the event has its object
    c = detail.complaint
    values = {"complaint_type": c.complaint_feedback_type} if c.complaint_feedback_type else {}
    change = RecordChange(
        key=f"complaint:{c.feedback_id}",
        message_id=mail.message_id,
        marker="complained_at",
        marker_value=iso(c.timestamp),
        counter="complained",
        values=values,
    )
    reason = f"complaint: {c.complaint_feedback_type}" if c.complaint_feedback_type else "complaint"
    addresses = _addresses(c.complained_recipients, mail.destination)
    return Meaning(kind, ref, change, reason, tuple(addresses))


def apply_batch(
    events: Sequence[SesEvent], store: FeedbackStore, clock: Callable[[], datetime] = utcnow
) -> list[Feedback | Exception]:
    """Record a batch of SES events: what each one did, in order, or the exception that
    stopped it (``RecordNotReady``: its record is still being sent; an AWS error) - one
    event's failure is that event's alone. See the module docstring."""
    results: list[Feedback | Exception | None] = [None] * len(events)
    meanings = [interpret(event) for event in events]
    suppressed = [0] * len(events)
    now = iso(clock())
    to_record: list[tuple[int, MailRef, RecordChange]] = []
    for index, meaning in enumerate(meanings):
        if meaning.ref is None or meaning.change is None:
            results[index] = Feedback(meaning.event_type, "ignored")
            continue
        # Suppression first, and whatever becomes of the record: the address bounced or
        # complained even if its record cannot be written now (a repeat finds it suppressed).
        if meaning.suppress_reason is not None:
            try:
                for address in meaning.addresses:
                    suppressed[index] += store.suppress(
                        address, meaning.ref.subscriber_id, meaning.suppress_reason, now
                    )
            except Exception as exc:  # this event's failure, not the batch's
                results[index] = exc
                continue
        to_record.append((index, meaning.ref, meaning.change))
    written = store.record_batch([(ref, change) for _, ref, change in to_record])
    for (index, _, _), result in zip(to_record, written, strict=True):
        if isinstance(result, Exception):
            results[index] = result
            continue
        meaning = meanings[index]
        results[index] = Feedback(
            event_type=meaning.event_type,
            outcome=result.recorded.value,
            counted=result.counted,
            suppressed=suppressed[index],
            bounce=meaning.bounce,
            soft_bounce_counted=result.soft_bounce_counted,
        )
    return [result for result in results if result is not None]


def apply_feedback(event: SesEvent, store: FeedbackStore, clock: Callable[[], datetime] = utcnow) -> Feedback:
    """One event alone (``apply_batch`` of one); raises what stopped it."""
    (result,) = apply_batch([event], store, clock)
    if isinstance(result, Exception):
        raise result
    return result
