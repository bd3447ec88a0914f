"""Errors the logic raises, and the classification of send failures."""

from __future__ import annotations


class MailroomError(Exception):
    """Base of every error Mailroom raises on purpose."""


class SendError(MailroomError):
    """A mail could not be sent; the subclass says what to do about it."""

    def __init__(self, code: str, message: str, throttled: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.throttled = throttled


class RetryableSendError(SendError):
    """Throttling, 5xx, failed connections: put the task back on the queue and try later."""


class UncertainSendError(SendError):
    """The request went out and its answer was lost: SES may have sent the mail.

    Mailroom keeps its promise of at most one mail: the claim is kept (status
    ``uncertain``), the mail is not sent again, and the record says why.
    """


class PermanentSendError(SendError):
    """Rejected message, invalid or suppressed address: record as failed, never retry."""


class TaskRetry(MailroomError):
    """Raised by a record handler so the batch processor reports the record as failed."""


class NotFound(MailroomError):
    """The thing asked for does not exist (an API answers 404)."""


class Conflict(MailroomError):
    """The request does not fit the current state, e.g. sending a sent campaign (an API answers 409)."""


class ContentError(ValueError):
    """The campaign's subject or content cannot be rendered; names the field and the reason.

    Here, not in mailroom.content, so that catching it (the admin API) loads no Jinja2."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
