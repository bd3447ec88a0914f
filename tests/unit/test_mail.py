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
    mail = render(
        "welcome",
        to="a@example.com",
        context={"name": "<b>Bob</b> & Co", "sender_name": "News", "unsubscribe_url": "https://x.example/u"},
    )
    assert "&lt;b&gt;Bob&lt;/b&gt; &amp; Co" in mail.html
    assert "<b>Bob</b>" not in mail.html
    assert "Welcome, <b>Bob</b> & Co!" in mail.text


def test_mime_is_multipart_alternative_with_text_then_html() -> None:
    mail = render(
        "welcome",
        to="a@example.com",
        context={"name": "Zoë", "sender_name": "Nouvelles Café", "unsubscribe_url": "https://x.example/u"},
    )
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
        render(
            "welcome",
            to="a@example.com",
            context={"name": "Zoë", "sender_name": "N", "unsubscribe_url": "https://x.example/u"},
        ),
        "n@example.com",
        "N",
    )
    raw.decode("ascii")
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: victim@example.com", "Hi\nX: y", "Hi\u2028there"])
def test_a_subject_with_a_line_break_is_refused(subject: str) -> None:
    with pytest.raises(ValidationError):
        Mail(to="a@example.com", subject=subject, text="", html="")


@pytest.mark.parametrize(
    "subject",
    [
        "Plain subject",
        "Ünïcödé subject with ümlauts and emoji 📬",
        "x" * 120,
        "日本語の件名" * 20,
        "ascii " * 160,
    ],
)
def test_every_header_and_body_survives_a_round_trip_through_the_stdlib_parser(subject: str) -> None:
    text = "Line one\nLine two with a very long line " + "word " * 40 + "\n\ttab=equals café\n"
    html = "<p>Hello <b>Zoë</b> = 1</p>" + "<span>x</span>" * 50
    mail = Mail(to="a@example.com", subject=subject, text=text, html=html, headers={"X-Campaign": "c1"})
    raw = to_mime(mail, "news@example.com", "Nouvelles Café")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = _parse(raw)
    assert str(message["Subject"]) == subject
    assert str(message["From"]) == "Nouvelles Café <news@example.com>"
    assert str(message["To"]) == "a@example.com"
    assert str(message["X-Campaign"]) == "c1"
    assert message["Date"] and message["Message-ID"].endswith("@example.com>")
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == text  # type: ignore[union-attr]
    assert message.get_body(("html",)).get_content().replace("\r\n", "\n") == html  # type: ignore[union-attr]
    body_lines = raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert all(len(line) <= 76 for line in body_lines)


def test_a_header_value_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValidationError):
        Mail(to="a@example.com", subject="s", text="", html="", headers={"X-Evil": "a\r\nBcc: b@example.com"})
