"""The outbox: every mail the functions sent through SES, readable (``GET /_local/outbox``).

moto's SES keeps sent mails in its in-process backend
(``ses_backends[account][region].sent_messages``; SES v2 ``SendEmail`` shares it). Raw
sends are MIME text, parsed here with the stdlib ``email`` package (``policy.default``)
into headers, the text part and the HTML part. moto does not record when a mail was sent,
so the outbox stamps each mail as it is appended (falling back to its ``Date`` header, or
when the outbox first saw it).
"""

from __future__ import annotations

import contextlib
import email
import threading
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

__all__ = ["Outbox"]

_STAMP = "_mailroom_local_sent_at"


class _StampedList(list[Any]):
    """moto's ``sent_messages`` list, stamping each mail with the time it was appended."""

    def append(self, message: Any) -> None:
        with contextlib.suppress(AttributeError):
            setattr(message, _STAMP, datetime.now(UTC))
        super().append(message)


class Outbox:
    """Reads (and clears) moto's sent mails for one account and region."""

    def __init__(self, account_id: str, region: str) -> None:
        self.account_id = account_id
        self.region = region
        self._first_seen: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def _sent(self) -> list[Any]:
        from moto.ses.models import ses_backends

        backend = ses_backends[self.account_id][self.region]
        with self._lock:
            if not isinstance(backend.sent_messages, _StampedList):
                backend.sent_messages = _StampedList(backend.sent_messages)
            sent: list[Any] = backend.sent_messages
        return sent

    def install(self) -> None:
        """Start stamping send times (call once the AWS endpoint is up)."""
        self._sent()

    def messages(self) -> list[dict[str, Any]]:
        """Every sent mail, oldest first."""
        return [self._describe(message) for message in list(self._sent())]

    def clear(self) -> int:
        """Forget every sent mail; returns how many there were."""
        sent = self._sent()
        count = len(sent)
        del sent[:count]
        self._first_seen.clear()
        return count

    def _sent_at(self, message: Any, parsed: EmailMessage | None) -> str:
        stamp: datetime | None = getattr(message, _STAMP, None)
        if stamp is None and parsed is not None and parsed["Date"]:
            try:
                stamp = parsedate_to_datetime(str(parsed["Date"])).astimezone(UTC)
            except (TypeError, ValueError):
                stamp = None
        if stamp is None:
            stamp = self._first_seen.setdefault(str(message.id), datetime.now(UTC))
        return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _describe(self, message: Any) -> dict[str, Any]:
        raw = getattr(message, "raw_data", None)
        if raw is not None:
            parsed = email.message_from_string(raw, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            return {
                "id": message.id,
                "to": _addresses(list(message.destinations or [])),
                "from": str(parsed["From"] or message.source or ""),
                "subject": str(parsed["Subject"] or ""),
                "headers": {name: str(value) for name, value in parsed.items()},
                "text": _part(parsed, "plain"),
                "html": _part(parsed, "html"),
                "sent_at": self._sent_at(message, parsed),
            }
        # SendEmail with Content.Simple (or SES v1 SendEmail): moto keeps one body.
        destinations = getattr(message, "destinations", {}) or {}
        recipients = [a for values in destinations.values() for a in values] if isinstance(destinations, dict) else []
        body = str(getattr(message, "body", "") or "")
        is_html = body.lstrip().startswith("<")
        return {
            "id": message.id,
            "to": _addresses(recipients),
            "from": str(getattr(message, "source", "") or ""),
            "subject": str(getattr(message, "subject", "") or ""),
            "headers": {},
            "text": None if is_html else body,
            "html": body if is_html else None,
            "sent_at": self._sent_at(message, None),
        }


def _addresses(values: list[str]) -> list[str]:
    """Unique bare addresses (moto lists the envelope and the header recipients)."""
    seen: list[str] = []
    for _, address in getaddresses(values):
        if address and address.lower() not in {s.lower() for s in seen}:
            seen.append(address)
    return seen


def _part(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None
