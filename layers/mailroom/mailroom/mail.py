"""Rendering mails with Jinja2 and turning them into MIME.

HTML templates (``*.html.j2``) are autoescaped; text and subject templates are not, and
a subject must be a single line. Every value that reaches a header is checked for CR/LF
by the ``Mail`` model, and the stdlib ``email`` package folds and encodes headers.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, make_msgid
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from mailroom.models import Mail

TEMPLATES = Path(__file__).parent / "templates"


@cache
def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, to: str, context: dict[str, Any], tags: dict[str, str] | None = None) -> Mail:
    """Render ``<template>.subject.j2``, ``.txt.j2`` and ``.html.j2`` into one Mail."""
    env = environment()
    subject = " ".join(env.get_template(f"{template}.subject.j2").render(context).split())
    return Mail(
        to=to,
        subject=subject,
        text=env.get_template(f"{template}.txt.j2").render(context),
        html=env.get_template(f"{template}.html.j2").render({**context, "subject": subject}),
        tags=tags or {},
    )


def to_mime(mail: Mail, sender_address: str, sender_name: str) -> bytes:
    """A multipart/alternative message (text, then HTML), encoded for SMTP (CRLF, 7-bit safe)."""
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((sender_name, sender_address))
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Message-ID"] = make_msgid(domain=sender_address.rpartition("@")[2] or None)
    for name, value in mail.headers.items():
        message[name] = value
    message.set_content(mail.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(mail.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message.as_bytes()
