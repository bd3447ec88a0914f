"""Rendering and MIME: autoescaped HTML, plain text, single-line headers."""

from __future__ import annotations

import email
from email import policy

import pytest
from pydantic import ValidationError

from mailroom.mail import render, to_mime
from mailroom.models import Mail


def _parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def test_html_is_escaped_and_text_is_not() -> None:
    mail = render("welcome", to="a@example.com", context={"name": "<b>Bob</b> & Co", "sender_name": "News"})
    assert "&lt;b&gt;Bob&lt;/b&gt; &amp; Co" in mail.html
    assert "<b>Bob</b>" not in mail.html
    assert "Welcome, <b>Bob</b> & Co!" in mail.text


def test_mime_is_multipart_alternative_with_text_then_html() -> None:
    mail = render("welcome", to="a@example.com", context={"name": "Zoë", "sender_name": "Nouvelles Café"})
    message = _parse(to_mime(mail, "news@example.com", "Nouvelles Café"))
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert "Zoë" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert str(message["From"]) == "Nouvelles Café <news@example.com>"
    assert str(message["Subject"]) == "Welcome to Nouvelles Café"
    assert message["Message-ID"].endswith("@example.com>")


def test_raw_mime_is_ascii_with_crlf_line_ends() -> None:
    raw = to_mime(
        render("welcome", to="a@example.com", context={"name": "Zoë", "sender_name": "N"}), "n@example.com", "N"
    )
    raw.decode("ascii")
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: victim@example.com", "Hi\nX: y", "Hi\u2028there"])
def test_a_subject_with_a_line_break_is_refused(subject: str) -> None:
    with pytest.raises(ValidationError):
        Mail(to="a@example.com", subject=subject, text="", html="")
