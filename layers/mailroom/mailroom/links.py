"""The links in mails: confirm a subscription, unsubscribe - each carrying a signed token.

A link names the subscriber by their random id, never by their address, and is signed
(``mailroom.tokens``) for one purpose: a confirmation token cannot unsubscribe anybody and
an unsubscribe token cannot confirm. Confirmation links expire with the pending subscriber
(``CONFIRMATION_DAYS``); unsubscribe links never do, because a mail read a year later must
still be able to unsubscribe (RFC 8058 one-click, and the visible link in the body).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailroom.tokens import Tokens

CONFIRM = "confirm"
UNSUBSCRIBE = "unsubscribe"
ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass(frozen=True)
class Links:
    """Builds the links of one deployment. ``tokens`` is called on each use (the key is read
    lazily and may be rotated; see ``adapters.secrets.LinkKeys``)."""

    public_url: str
    tokens: Callable[[], Tokens]
    confirmation_seconds: int = 7 * 24 * 3600

    @property
    def base(self) -> str:
        return self.public_url.rstrip("/")

    def confirm_url(self, subscriber_id: str) -> str:
        token = self.tokens().sign(CONFIRM, subscriber_id, self.confirmation_seconds)
        return f"{self.base}/subscriptions/confirm?token={token}"

    def unsubscribe_url(self, subscriber_id: str) -> str:
        return f"{self.base}/unsubscribe?token={self.tokens().sign(UNSUBSCRIBE, subscriber_id)}"

    def unsubscribe_headers(self, unsubscribe_url: str) -> dict[str, str]:
        """RFC 2369 ``List-Unsubscribe`` with RFC 8058 one-click: mailbox providers POST
        ``List-Unsubscribe=One-Click`` to the URL, with no further step."""
        return {"List-Unsubscribe": f"<{unsubscribe_url}>", "List-Unsubscribe-Post": ONE_CLICK}


def fixed_links(public_url: str = "https://example.com", key: bytes = b"preview-only-key-" * 2) -> Links:
    """Links signed with a fixed, public key: for validating and previewing content only
    (such a link unsubscribes nobody: the deployment's key differs)."""
    tokens = Tokens([key])
    return Links(public_url, lambda: tokens)
