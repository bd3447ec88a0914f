"""The small HTML pages behind the links in mails (confirm, unsubscribe), for browsers.

The single-page app shows the same answers from the JSON the same routes give when asked
for ``application/json``. Pages carry no script and no external resource; the token in
their URL never leaks through a Referer (``Referrer-Policy: no-referrer``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from mailroom.mail import environment

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def page(status: int, title: str, message: str, sender_name: str, button: str | None = None) -> Response[Any]:
    """An HTML page; ``button`` adds a one-button form that POSTs back to the same URL."""
    html = (
        environment()
        .get_template("page.html.j2")
        .render(title=title, message=message, sender_name=sender_name, button=button)
    )
    return Response(status_code=status, content_type="text/html; charset=utf-8", body=html, headers=dict(HEADERS))
