"""Pydantic models of subscribers, tasks and results. No I/O here."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 100

# Any control character (C0, DEL, C1) and the Unicode line/paragraph separators: a
# name ends up in mail bodies and must never be able to break a line or a header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a Z, the one timestamp format stored and sent."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalize_email(value: str) -> str:
    """Validate an address's syntax (no DNS) and return its normalized form.

    The domain is IDNA-encoded (ASCII, lower case) by email-validator and the local part
    lower-cased, so that the same address in another case or script is the same
    subscriber. Non-ASCII local parts (SMTPUTF8) are refused: SES cannot send to them.
    Raises ValueError with a readable reason.
    """
    if len(value) > MAX_EMAIL_LENGTH:
        raise ValueError(f"must be at most {MAX_EMAIL_LENGTH} characters")
    try:
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return f"{checked.local_part.lower()}@{checked.ascii_domain.lower()}"


class Strict(BaseModel):
    """Base of the models that cross a boundary: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Registration(Strict):
    """The body of POST /subscriptions."""

    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3)]
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_NAME_LENGTH)] | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalize_email(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters or line breaks")
        return value or None


class SubscriberStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


class Subscriber(BaseModel):
    """A subscriber as stored in the subscribers table (key: the normalized email)."""

    model_config = ConfigDict(frozen=True)

    id: str
    email: str
    name: str | None = None
    status: SubscriberStatus = SubscriberStatus.SUBSCRIBED
    created_at: str
    welcome_queued: bool = False


class WelcomeTask(Strict):
    """One welcome mail to send; the body of a welcome queue message."""

    kind: Literal["welcome"] = "welcome"
    subscriber_id: str
    email: str
    correlation_id: str | None = None


class Recipient(Strict):
    id: str
    email: str
    name: str | None = None


class NewsletterTask(Strict):
    """Many recipients of one newsletter edition; the body of a newsletter queue message."""

    kind: Literal["newsletter"] = "newsletter"
    edition: str
    recipients: list[Recipient] = Field(min_length=1)
    correlation_id: str | None = None


class ScheduleInvocation(BaseModel):
    """The payload EventBridge Scheduler delivers (the template's Input, context attributes filled in)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    schedule: str = "DailyNewsletter"
    scheduled_time: datetime | None = Field(default=None, alias="scheduledTime")
    execution_id: str | None = Field(default=None, alias="executionId")
    attempt_number: int | None = Field(default=None, alias="attemptNumber")


class DeliveryStatus(StrEnum):
    SENDING = "sending"  # claimed: a worker is sending it (or crashed while it did)
    SENT = "sent"
    FAILED = "failed"  # permanent failure, with the reason
    RELEASED = "released"  # a transient failure gave the claim back; the next delivery may claim it
    UNCERTAIN = "uncertain"  # the send's answer was lost: SES may have sent it; never sent again


class Outcome(StrEnum):
    """What happened to one mail in this attempt."""

    SENT = "sent"  # sent now
    DUPLICATE = "duplicate"  # already sent (or being sent) by an earlier delivery: nothing sent
    FAILED = "failed"  # permanent failure, recorded, not retried
    RETRY = "retry"  # transient failure: claim released, the task goes back to the queue
    SKIPPED = "skipped"  # the recipient is no longer eligible (unsubscribed or gone): nothing sent
    UNCERTAIN = "uncertain"  # the request went out, its answer was lost: not sent again


class Mail(BaseModel):
    """A rendered mail, ready to be turned into MIME."""

    model_config = ConfigDict(frozen=True)

    to: str
    subject: Annotated[str, StringConstraints(max_length=998)]
    text: str
    html: str
    headers: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("subject", "to")
    @classmethod
    def _single_line(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must be a single line without control characters")
        return value
