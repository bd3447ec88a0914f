"""Campaign content: Markdown and HTML into the mail layout, per-recipient fields, a sandbox."""

from __future__ import annotations

import email
from email import policy
from urllib.parse import urlsplit

import pytest

from mailroom.content import SAMPLE, CampaignContent, CampaignRenderer, html_to_text, validate
from mailroom.errors import ContentError
from mailroom.links import UNSUBSCRIBE, Links
from mailroom.mail import to_mime
from mailroom.models import Recipient
from mailroom.tokens import Tokens

TOKENS = Tokens([b"k" * 32])
LINKS = Links("https://news.example.com/", lambda: TOKENS)
UNSUBSCRIBE_URL = f"https://news.example.com/unsubscribe?token={TOKENS.sign(UNSUBSCRIBE, SAMPLE.id)}"
ONE_CLICK_URL = UNSUBSCRIBE_URL.replace("/unsubscribe?", "/api/unsubscribe?")


def render(content: str, subject: str = "Hi {{ name }}", fmt: str = "markdown", recipient: Recipient = SAMPLE):
    return CampaignRenderer(CampaignContent(subject, content, fmt), "Mailroom", LINKS).render(recipient)


def test_markdown_becomes_html_and_keeps_links_to_per_recipient_fields() -> None:
    mail = render("# Title\n\nHello **{{ name }}**, [leave]({{ unsubscribe_url }}).\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<h1>Title</h1>" in mail.html
    assert "<strong>Ada Lovelace</strong>" in mail.html
    assert f'<a href="{UNSUBSCRIBE_URL}">leave</a>' in mail.html
    assert "<table>" in mail.html
    assert mail.subject == "Hi Ada Lovelace"
    # the text part is the Markdown source with the fields filled in, and the footer's link
    assert "Hello **Ada Lovelace**" in mail.text
    assert mail.text.count(UNSUBSCRIBE_URL) == 2
    assert TOKENS.verify(UNSUBSCRIBE, UNSUBSCRIBE_URL.partition("token=")[2]).subscriber_id == SAMPLE.id


def test_every_campaign_mail_has_rfc_8058_one_click_unsubscribe_headers_with_an_https_url() -> None:
    raw = to_mime(render("Hello {{ name }}"), "news@example.com", "News")
    parsed = email.message_from_bytes(raw, policy=policy.default)
    # the one-click URL is the API's route (a mailbox provider POSTs there and runs no script)
    assert parsed["List-Unsubscribe"] == f"<{ONE_CLICK_URL}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = str(parsed["List-Unsubscribe"]).strip("<>")
    assert urlsplit(url).scheme == "https" and urlsplit(url).path == "/api/unsubscribe"
    # the link in the body is the web app's unsubscribe page, with the same token
    assert UNSUBSCRIBE_URL in parsed.get_body(preferencelist=("plain",)).get_content()
    assert url.partition("?")[2] == UNSUBSCRIBE_URL.partition("?")[2]


def test_raw_html_in_markdown_is_shown_not_run() -> None:
    assert "&lt;script&gt;" in render("<script>alert(1)</script>").html


def test_html_content_is_kept_and_gets_a_text_part() -> None:
    mail = render('<h2>Offer</h2><p>Dear {{ name }},<br>see <a href="https://x.example">this</a></p>', fmt="html")
    assert "<h2>Offer</h2>" in mail.html and "Dear Ada Lovelace" in mail.html
    assert "Offer" in mail.text and "Dear Ada Lovelace," in mail.text and "this (https://x.example)" in mail.text


def test_a_hostile_name_is_escaped_in_html_and_cannot_break_the_subject() -> None:
    hostile = Recipient(id="x", email="e@example.com", name='"><img src=x onerror=alert(1)>')
    mail = render("Hi {{ name }}", recipient=hostile)
    assert "<img" not in mail.html and "&lt;img" in mail.html
    raw = to_mime(mail, "n@example.com", "N")
    assert raw.count(b"\r\nSubject:") == 1


def test_without_a_name_the_field_is_empty() -> None:
    mail = render("Hello {{ name }}!", recipient=Recipient(id="x", email="e@example.com"))
    assert "Hello !" in mail.text and mail.subject == "Hi"


@pytest.mark.parametrize(
    ("subject", "content", "field", "reason"),
    [
        ("Hi", "{{ unknown_field }}", "content", "undefined"),
        ("Hi", "{% for %}", "content", "line 1"),
        ("Hi {{", "x", "subject", "template error"),
        ("Hi {{ nme }}", "x", "subject", "undefined"),  # renders at send time: still the subject's fault
        ("Hi", "{{ name.__class__.__mro__ }}", "content", "unsafe"),
        ("Hi", "{{ ''.__class__.__subclasses__() }}", "content", "unsafe"),
        ("{{ '' }}", "x", "subject", "empty"),
    ],
)
def test_content_that_cannot_render_is_refused_with_the_field(
    subject: str, content: str, field: str, reason: str
) -> None:
    with pytest.raises(ContentError) as caught:
        validate(CampaignContent(subject, content, "markdown"))
    assert caught.value.field == field
    assert reason in caught.value.message.lower()


def test_html_to_text_skips_styles_and_keeps_list_items() -> None:
    assert html_to_text("<style>p{}</style><ul><li>one</li><li>two</li></ul>") == "- one\n\n- two\n"
