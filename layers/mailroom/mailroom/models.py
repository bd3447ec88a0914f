"""Pydantic models of subscribers, tasks and results. No I/O here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 100

# Any control character (C0, DEL, C1) and the Unicode line/paragraph separators: a
# name ends up in mail bodies and must never be able to break a line or a header.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# The bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): in a
# one-line field they only serve to make text read differently from what it is ("Trojan
# Source"), e.g. a name that reverses the rest of a greeting or an address in a list. The
# marks (U+200E, U+200F) stay allowed: right-to-left names may need them.
BIDI_CONTROL = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
# In multi-line text (campaign content): the C0 controls other than tab, line feed and
# carriage return, and DEL. No Markdown or HTML needs them; NUL ends strings elsewhere.
CONTENT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


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
    # Imported here: the functions that never validate an address (the dispatcher, the SES
    # events, auth) do not pay for email_validator and idna (about 14 ms of a cold start).
    from email_validator import EmailNotValidError, validate_email

    try:
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return f"{checked.local_part.lower()}@{checked.ascii_domain.lower()}"


def _name(value: str) -> str:
    if CONTROL.search(value):
        raise ValueError("must not contain control characters or line breaks")
    if BIDI_CONTROL.search(value):
        raise ValueError("must not contain bidirectional override or isolate characters (U+202A-U+202E, U+2066-U+2069)")
    return value


# A person's name: trimmed, at most MAX_NAME_LENGTH, one line (it reaches mail bodies and headers).
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_NAME_LENGTH), AfterValidator(_name)]


class Strict(BaseModel):
    """Base of the models that cross a boundary: unknown fields are an error.

    Every model here defers building its validator to its first use (``defer_build``): a
    function builds the few it uses, not all of them at import (bench.coldstart)."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


MAX_CONSENT_LENGTH = 500


class Registration(Strict):
    """The body of POST /subscriptions. ``consent`` is the text the person agreed to, kept
    with the subscriber as a record of the opt-in."""

    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3)]
    name: Name | None = None
    consent: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_CONSENT_LENGTH), AfterValidator(_name)]
        | None
    ) = None
    # The honeypot (docs/abuse.md): a field of the sign-up form that people never see or fill.
    website: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalize_email(value)

    @field_validator("name")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


class SubscriberStatus(StrEnum):
    PENDING = "pending"  # registered, not confirmed yet (double opt-in); expires (TTL)
    SUBSCRIBED = "subscribed"  # confirmed: receives newsletters
    UNSUBSCRIBED = "unsubscribed"  # asked to receive nothing more
    SUPPRESSED = "suppressed"  # a hard bounce or a complaint: never mailed again


class SubscriberSource(StrEnum):
    SIGNUP = "signup"
    IMPORT = "import"


class Subscriber(BaseModel):
    """A subscriber as stored in the subscribers table (key: the normalized email).

    Only ``subscribed`` subscribers receive newsletters. A pending one carries ``expires_at``
    (epoch seconds, the table's TTL attribute): unconfirmed, it disappears. ``confirmations``
    counts the confirmation mails requested (each is a ledger record of its own),
    ``confirmations_queued`` how many of them reached the queue, and ``confirmation_sent_at``
    when the last was requested: a repeated registration re-sends it at most once per
    ``CONFIRMATION_RESEND_SECONDS`` - unless the last request never reached the queue.
    """

    model_config = ConfigDict(defer_build=True, frozen=True, extra="ignore")

    id: str
    email: str
    name: str | None = None
    status: SubscriberStatus = SubscriberStatus.SUBSCRIBED
    created_at: str
    source: SubscriberSource = SubscriberSource.SIGNUP
    consent: str | None = None
    welcome_queued: bool = False
    confirmations: int = 0
    confirmations_queued: int = 0
    confirmation_sent_at: str | None = None
    confirmed_at: str | None = None
    unsubscribed_at: str | None = None
    suppressed_at: str | None = None
    suppressed_reason: str | None = None
    soft_bounces: int = 0
    expires_at: int | None = None

    def public(self) -> dict[str, object]:
        """The admin API's view of a subscriber."""
        return self.model_dump(mode="json", exclude={"welcome_queued", "expires_at", "confirmations_queued"})


class ConfirmationTask(Strict):
    """One confirmation mail (double opt-in) to send; a welcome queue message.

    ``seq`` is the subscriber's ``confirmations`` count when it was requested: each request
    is its own ledger record (``confirmation``, ``<subscriber id>#<seq>``), sent at most once.
    """

    kind: Literal["confirmation"] = "confirmation"
    subscriber_id: str
    email: str
    seq: int = Field(ge=1)
    correlation_id: str | None = None
    attempt: int = Field(default=0, ge=0)
    failures: int = Field(default=0, ge=0)
    held: str | None = None


class WelcomeTask(Strict):
    """One welcome mail to send; the body of a welcome queue message."""

    kind: Literal["welcome"] = "welcome"
    subscriber_id: str
    email: str
    correlation_id: str | None = None
    # Retries through the queue (see CampaignTask): throttled so far, failed transiently so far,
    # and a claim of ours known not to have been sent (it may be taken over).
    attempt: int = Field(default=0, ge=0)
    failures: int = Field(default=0, ge=0)
    held: str | None = None


# What the welcome queue carries: welcome mails and confirmation mails.
WelcomeQueueTask = Annotated[WelcomeTask | ConfirmationTask, Field(discriminator="kind")]

DeadLetterQueueName = Literal["welcome", "newsletter", "fanout"]


class RedriveRequest(Strict):
    """POST /admin/dead-letters/redrive: which dead-letter queue (all if absent), how many at most."""

    queue: DeadLetterQueueName | None = None
    # strict: "5", 5.0 and true are not counts (pydantic's lax mode would take them)
    limit: int = Field(default=1000, ge=1, le=10_000, strict=True)


class Recipient(Strict):
    id: str
    email: str
    name: str | None = None
    # A claim token of an earlier attempt that is known not to have sent this mail (its claim
    # or its release could not be confirmed): the next attempt may take that claim over.
    held: str | None = None


class CampaignTask(Strict):
    """Many recipients of one campaign; the body of a newsletter queue message.

    ``attempt`` counts how often the recipients were handed back after throttling (it sets
    the backoff; throttling never gives up); ``failures`` counts the transient failures
    (5xx, lost connections, configuration errors) they met: after ``MAX_SEND_FAILURES`` the
    task goes to the dead-letter queue with its last error. ``task`` names the fan-out page
    and position the recipients came from.
    """

    kind: Literal["campaign"] = "campaign"
    campaign_id: str
    task: str
    recipients: list[Recipient] = Field(min_length=1)
    attempt: int = Field(default=0, ge=0)
    failures: int = Field(default=0, ge=0)
    correlation_id: str | None = None


class FanoutStep(Strict):
    """One resumable step of a campaign's fan-out: the body of a fan-out queue message.

    The scan position lives in the campaign item, not here, so a duplicated or stale step
    message can never rewind the fan-out.
    """

    kind: Literal["fanout"] = "fanout"
    campaign_id: str
    segment: int = Field(ge=0)
    correlation_id: str | None = None


class ScheduleInvocation(BaseModel):
    """The payload EventBridge Scheduler delivers (the template's Input, context attributes filled in)."""

    model_config = ConfigDict(defer_build=True, populate_by_name=True, extra="ignore")

    schedule: str = "DailyNewsletter"
    scheduled_time: datetime | None = Field(default=None, alias="scheduledTime")
    execution_id: str | None = Field(default=None, alias="executionId")
    attempt_number: int | None = Field(default=None, alias="attemptNumber")


class DeliveryStatus(StrEnum):
    SENDING = "sending"  # claimed: a worker is sending it (or crashed while it did)
    SENT = "sent"
    FAILED = "failed"  # permanent failure, with the reason
    SKIPPED = "skipped"  # not sent on purpose: unsubscribed, gone, or the campaign was cancelled
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

    model_config = ConfigDict(defer_build=True, frozen=True)

    to: str
    subject: Annotated[str, StringConstraints(max_length=998)]
    text: str
    html: str
    headers: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("subject", "to")
    @classmethod
    def _single_line(cls, value: str) -> str:
        if CONTROL.search(value):
            raise ValueError("must be a single line without control characters")
        return value

    @field_validator("headers")
    @classmethod
    def _single_line_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not re.fullmatch(r"[A-Za-z0-9-]{1,76}", name) or CONTROL.search(text):
                raise ValueError(f"header {name!r} must be a token with a single-line value")
        return value


# --------------------------------------------------------------------------------------
# Campaigns
# --------------------------------------------------------------------------------------
MAX_SUBJECT_LENGTH = 200
MAX_CONTENT_BYTES = 100 * 1024


class CampaignStatus(StrEnum):
    DRAFT = "draft"  # being written; sent only by "send now"
    SCHEDULED = "scheduled"  # goes out at the first schedule firing at or after send_at
    SENDING = "sending"  # fanned out and being sent
    SENT = "sent"  # every recipient resolved (sent, failed, skipped or uncertain)
    CANCELLED = "cancelled"  # stopped; recipients not yet mailed are skipped


class ContentFormat(StrEnum):
    MARKDOWN = "markdown"
    HTML = "html"


def _subject(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if CONTROL.search(value):
        raise ValueError("must be a single line without control characters (no CR/LF)")
    if BIDI_CONTROL.search(value):
        raise ValueError("must not contain bidirectional override or isolate characters (U+202A-U+202E, U+2066-U+2069)")
    return value


def _content(value: str) -> str:
    size = len(value.encode("utf-8", errors="surrogatepass"))
    if size > MAX_CONTENT_BYTES:
        raise ValueError(f"is {size} bytes; at most {MAX_CONTENT_BYTES} are accepted")
    if not value.strip():
        raise ValueError("must not be empty")
    if found := CONTENT_CONTROL.search(value):
        raise ValueError(f"must not contain the control character U+{ord(found.group()):04X}")
    return value


# RFC 3339's date-time (what the API documents): pydantic alone would also take a number
# (0 is 1970), "1700000000", a date alone or a time without seconds.
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII)


def _rfc3339(value: object) -> object:
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a date and time as text, e.g. 2026-12-01T10:00:00Z")
    if not RFC3339.fullmatch(value):
        raise ValueError("must be a date and time with a time zone, e.g. 2026-12-01T10:00:00Z or +01:00")
    return value


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("must carry a time zone, e.g. 2026-12-01T10:00:00Z or +01:00")
    return value


Subject = Annotated[str, StringConstraints(max_length=MAX_SUBJECT_LENGTH), AfterValidator(_subject)]
Content = Annotated[str, AfterValidator(_content)]
SendAt = Annotated[datetime | None, BeforeValidator(_rfc3339), AfterValidator(_aware)]
Email = Annotated[str, AfterValidator(normalize_email)]


class CampaignCreate(Strict):
    """The body of POST /admin/campaigns."""

    subject: Subject
    content: Content
    format: ContentFormat = ContentFormat.MARKDOWN
    send_at: SendAt = None


class CampaignUpdate(Strict):
    """The body of PATCH /admin/campaigns/{id}: only the fields given change; ``send_at: null`` unschedules."""

    subject: Subject | None = None
    content: Content | None = None
    format: ContentFormat | None = None
    send_at: SendAt = None


class PreviewRequest(Strict):
    """The body of POST /admin/campaigns/{id}/preview: whom to render it for (all optional)."""

    email: Email | None = None
    name: Name | None = None


class DraftPreviewRequest(PreviewRequest):
    """The body of POST /admin/campaigns/preview: unsaved content, rendered for a sample recipient."""

    subject: Subject
    content: Content
    format: ContentFormat = ContentFormat.MARKDOWN


class TestSendRequest(Strict):
    """The body of POST /admin/campaigns/{id}/test: one address to send a test copy to."""

    email: Email
    name: Name | None = None


COUNTERS = ("recipients", "sent", "failed", "skipped", "uncertain", "resolved")
FEEDBACK_COUNTERS = ("delivered", "bounced", "complained")


class Campaign(BaseModel):
    """A campaign as stored (the campaigns table, key ``id``), counters included."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="ignore")

    id: str
    subject: str
    content: str
    format: ContentFormat
    status: CampaignStatus
    send_at: str | None = None
    created_at: str
    updated_at: str
    started_at: str | None = None
    finished_at: str | None = None
    cancelled_at: str | None = None
    progressed_at: str | None = None  # the fan-out's last step
    segments: int = 0
    segments_left: int = 0
    recipients: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    uncertain: int = 0
    resolved: int = 0
    # SES feedback (SesEventsFunction): each recipient's first event of each kind
    delivered: int = 0
    bounced: int = 0
    complained: int = 0

    @property
    def queued(self) -> int:
        """Recipients on the queue or being sent: selected, not yet resolved."""
        return self.recipients - self.resolved

    @property
    def fanout_done(self) -> bool:
        return self.status is not CampaignStatus.DRAFT and self.segments > 0 and self.segments_left == 0

    def public(self) -> dict[str, object]:
        """The API's view of a campaign."""
        return {
            "id": self.id,
            "subject": self.subject,
            "content": self.content,
            "format": self.format.value,
            "status": self.status.value,
            "send_at": self.send_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "cancelled_at": self.cancelled_at,
            "fanout_done": self.fanout_done,
            "counters": {
                "recipients": self.recipients,
                "queued": self.queued,
                "sent": self.sent,
                "failed": self.failed,
                "skipped": self.skipped,
                "uncertain": self.uncertain,
            },
            "feedback": {"delivered": self.delivered, "bounced": self.bounced, "complained": self.complained},
        }


@dataclass(frozen=True)
class Resolution:
    """The final status of one record. ``claim`` is the claim token it must still hold; None
    means the record was never claimed (it is created, or a released one is taken over - or
    one ``held`` by an earlier attempt that is known not to have sent it)."""

    subscriber_id: str
    email: str
    status: DeliveryStatus
    claim: str | None = None
    claimed_at: str | None = None
    message_id: str | None = None
    error: str | None = None
    held: str | None = None
    # False: the subscriber is gone (erased, or the address belongs to somebody else now):
    # the record must not get the address back (GDPR erasure)
    keep_address: bool = True


@dataclass(frozen=True)
class Page:
    """One fan-out scan page: its recipients and where the next page starts (None: the end)."""

    recipients: list[Recipient]
    next_cursor: str | None
