"""The links in mails: confirm a subscription, unsubscribe - each carrying a signed token.

A link names the subscriber by their random id, never by their address, and is signed
(``mailroom.tokens``) for one purpose: a confirmation token cannot unsubscribe anybody and
an unsubscribe token cannot confirm. Confirmation links expire with the pending subscriber
(``CONFIRMATION_DAYS``); unsubscribe links never do, because a mail read a year later must
still be able to unsubscribe (RFC 8058 one-click, and the visible link in the body).

The links open the web app (docs/hosting.md): ``<public>/confirm?token=`` and
``<public>/unsubscribe?token=`` are its pages, which call the API under ``<public>/api``.
The RFC 8058 one-click URL in ``List-Unsubscribe`` is the API's own route,
``<public>/api/unsubscribe?token=`` (the same token): a mailbox provider POSTs to it and runs
no JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailroom.tokens import Tokens

CONFIRM = "confirm"
UNSUBSCRIBE = "unsubscribe"
ONE_CLICK = "List-Unsubscribe=One-Click"
API_PATH = "/api"  # where the web app's origin routes the API (CloudFront's /api/* behavior)
CONFIRM_PAGE = "/confirm"
UNSUBSCRIBE_PAGE = "/unsubscribe"


@dataclass(frozen=True)
class Links:
    """Builds the links of one deployment. ``public_url`` is the web app's URL, or a callable
    that reads it (``adapters.parameters.PublicUrl``: the SSM parameter, cached); ``tokens``
    is called on each use (the key is read lazily and may be rotated; see
    ``adapters.secrets.LinkKeys``)."""

    public_url: str | Callable[[], str]
    tokens: Callable[[], Tokens]
    confirmation_seconds: int = 7 * 24 * 3600

    @property
    def base(self) -> str:
        url = self.public_url if isinstance(self.public_url, str) else self.public_url()
        return url.rstrip("/")

    def confirm_url(self, subscriber_id: str) -> str:
        """The web app's confirmation page, which confirms through the API."""
        token = self.tokens().sign(CONFIRM, subscriber_id, self.confirmation_seconds)
        return f"{self.base}{CONFIRM_PAGE}?token={token}"

    def unsubscribe_url(self, subscriber_id: str) -> str:
        """The web app's unsubscribe page (one button), the link shown in the mail."""
        return f"{self.base}{UNSUBSCRIBE_PAGE}?token={self.tokens().sign(UNSUBSCRIBE, subscriber_id)}"

    def one_click_url(self, unsubscribe_url: str) -> str:
        """The API route for the same token: ``POST`` unsubscribes at once (RFC 8058)."""
        base, _, query = unsubscribe_url.partition(f"{UNSUBSCRIBE_PAGE}?")
        if not query or base.endswith(API_PATH):
            raise ValueError(f"not an unsubscribe page URL: {unsubscribe_url[:80]!r}")
        return f"{base}{API_PATH}{UNSUBSCRIBE_PAGE}?{query}"

    def unsubscribe_headers(self, unsubscribe_url: str) -> dict[str, str]:
        """RFC 2369 ``List-Unsubscribe`` with RFC 8058 one-click: mailbox providers POST
        ``List-Unsubscribe=One-Click`` to the API's URL for the page's token, with no further step."""
        return {"List-Unsubscribe": f"<{self.one_click_url(unsubscribe_url)}>", "List-Unsubscribe-Post": ONE_CLICK}


def fixed_links(public_url: str = "https://example.com", key: bytes = b"preview-only-key-" * 2) -> Links:
    """Links signed with a fixed, public key: for validating and previewing content only
    (such a link unsubscribes nobody: the deployment's key differs)."""
    tokens = Tokens([key])
    return Links(public_url, lambda: tokens)
