"""Hostile input through the real handlers (under moto from template.yaml) and the mail code.

* CR/LF injection: no CR or LF (nor a Unicode line break) from a name, a subject, a
  campaign field or the sender's name ever reaches a header of a rendered message; the API
  refuses them in one-line fields (400 naming the field), and a name that got into the
  table some other way is folded into one line;
* HTML injection: a subscriber's name (or a subject) with markup is escaped in the HTML
  mail and in the preview; Markdown's raw HTML is shown as text; a template cannot reach
  Python's internals, nor run away (huge values, loops, 1/0): 400 naming the field;
* oversized bodies: 413 naming the limit;
* deeply nested JSON, NaN and huge numbers: 400;
* Unicode: lone surrogates (``"\\ud800"``) are a 400 naming the field (they cannot be
  encoded to UTF-8 for a mail, a page or a table); NUL and control characters are refused;
  bidirectional overrides are refused in one-line fields; combining characters, emoji,
  right-to-left names and internationalised domains go through intact.
"""

from __future__ import annotations

import email
import json
from email import policy
from email.message import EmailMessage
from typing import Any

import boto3
import pytest

from mailroom.api import MAX_JSON_DEPTH
from mailroom.content import MAX_RENDERED_BYTES, CampaignContent, CampaignRenderer
from mailroom.links import fixed_links
from mailroom.mail import to_mime
from mailroom.models import MAX_CONTENT_BYTES, Mail, Recipient
from mailroom_local.template import Stack
from tests.campaigns import Campaigns, Loader, api_event
from tests.conftest import LambdaContext
from tests.support import ACCOUNT, REGION, load_event, queue_messages, sqs_event

LINE_BREAKS = ["\r\n", "\n", "\r", "\u2028", "\u2029", "\x85", "\x0b"]
CONTROLS = ["\x00", "\x1b", "\x7f", "\x9b"]
BIDI_OVERRIDES = ["\u202e", "\u202d", "\u2066", "\u2069"]
LONE_SURROGATES = ["\\ud800", "\\udfff", "\\udc00\\ud800", "x\\ud83d"]  # as JSON escapes


# ----------------------------------------------------------------------------- helpers


def _registration(body: str | dict[str, Any], content_type: str = "application/json") -> dict[str, Any]:
    event = load_event("registration_post.json")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    event["headers"] = {**event["headers"], "Content-Type": content_type}
    event["multiValueHeaders"] = {**event["multiValueHeaders"], "Content-Type": [content_type]}
    return event


def _answer(response: dict[str, Any]) -> tuple[int, Any]:
    return response["statusCode"], json.loads(response["body"])


def _subscribers(stack: Stack) -> list[dict[str, Any]]:
    items = boto3.client("dynamodb", region_name=REGION).scan(TableName=stack.physical_name("SubscribersTable"))
    return [{key: next(iter(value.values())) for key, value in item.items()} for item in items["Items"]]


def _raw_mails() -> list[EmailMessage]:
    """Every message moto's SES accepted, parsed from its raw bytes (headers as sent)."""
    from moto.ses.models import ses_backends

    messages = []
    for sent in ses_backends[ACCOUNT][REGION].sent_messages:
        raw = getattr(sent, "raw_data", None)
        if raw is not None:
            parsed = email.message_from_string(raw, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            messages.append(parsed)
    return messages


def _assert_headers_are_only(message: bytes | EmailMessage, expected: set[str]) -> None:
    """The message's header names are exactly ``expected`` (lower case), each once, and no
    header line of the raw message is anything but a header or a folded continuation."""
    parsed = (
        message if isinstance(message, EmailMessage) else email.message_from_bytes(message, policy=policy.SMTP)  # type: ignore[arg-type]
    )
    names = [name.lower() for name in parsed]
    assert sorted(names) == sorted(expected), names


MIME_HEADERS = {"from", "to", "subject", "message-id", "date", "mime-version", "content-type"}
CAMPAIGN_HEADERS = MIME_HEADERS | {"list-unsubscribe", "list-unsubscribe-post"}


def _deliver_confirmations(stack: Stack, load_function: Loader, context: LambdaContext) -> None:
    tasks = queue_messages(stack, "WelcomeQueue")
    worker = load_function("WelcomeWorkerFunction")
    assert worker.lambda_handler(sqs_event(stack, "WelcomeQueue", tasks), context) == {"batchItemFailures": []}


@pytest.fixture
def campaigns(stack: Stack, load_function: Loader) -> Campaigns:
    return Campaigns(stack, load_function)


def _put_subscriber(stack: Stack, email_address: str, name: str, subscriber_id: str = "s-1") -> None:
    """A subscriber written straight to the table (as an older version or an operator might)."""
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=stack.physical_name("SubscribersTable"),
        Item={
            "email": {"S": email_address},
            "id": {"S": subscriber_id},
            "name": {"S": name},
            "status": {"S": "subscribed"},
            "created_at": {"S": "2026-11-28T09:00:00.000Z"},
        },
    )


# ----------------------------------------------------------------------------- CR/LF injection


@pytest.mark.parametrize("field", ["name", "consent"])
@pytest.mark.parametrize("breaker", LINE_BREAKS + CONTROLS, ids=repr)
def test_a_line_break_or_control_character_in_a_sign_up_is_refused_naming_the_field(
    stack: Stack, load_function: Loader, context: LambdaContext, field: str, breaker: str
) -> None:
    app = load_function("RegistrationFunction")
    body = {"email": "eve@example.com", field: f"Eve{breaker}Bcc: victim@example.com"}
    status, answer = _answer(app.lambda_handler(_registration(body), context))
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (400, "invalid_field", field)
    assert _subscribers(stack) == []


@pytest.mark.parametrize(
    "address",
    [
        # a line break (header injection)
        "eve@example.com\r\nBcc: victim@example.com",
        "eve@example.com\nX: y",
        "e\rve@x.com",
        # addresses SES cannot send to
        "josé@example.com",
        "用户@example.com",
        "ada@exa mple.com",
        "ada@\u202eexample.com",
    ],
)
def test_an_address_with_a_line_break_or_that_ses_cannot_send_to_is_a_400(
    stack: Stack, load_function: Loader, context: LambdaContext, address: str
) -> None:
    app = load_function("RegistrationFunction")
    status, answer = _answer(app.lambda_handler(_registration({"email": address}), context))
    assert (status, answer["error"]["field"]) == (400, "email")
    assert _subscribers(stack) == []


@pytest.mark.parametrize("breaker", LINE_BREAKS + CONTROLS, ids=repr)
def test_a_line_break_in_a_campaign_subject_is_refused_naming_the_field(campaigns: Campaigns, breaker: str) -> None:
    subject = f"News{breaker}Bcc: everyone@example.com"
    for method, path, body in [
        ("POST", "/admin/campaigns", {"subject": subject, "content": "Hi"}),
        ("POST", "/admin/campaigns/preview", {"subject": subject, "content": "Hi"}),
    ]:
        status, answer = campaigns.call(method, path, body)
        assert (status, answer["error"]["field"]) == (400, "subject"), (path, answer)
    created = campaigns.create()
    status, answer = campaigns.call("PATCH", f"/admin/campaigns/{created['id']}", {"subject": subject})
    assert (status, answer["error"]["field"]) == (400, "subject")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/campaigns/preview", {"subject": "Hi", "content": "Hi", "name": "Eve\r\nBcc: x@example.com"}),
        ("/admin/campaigns/{id}/preview", {"name": "Eve\nBcc: x@example.com"}),
        ("/admin/campaigns/{id}/test", {"email": "eve@example.com", "name": "Eve\r\nBcc: x@example.com"}),
        ("/admin/campaigns/{id}/test", {"email": "eve@example.com\r\nBcc: x@example.com"}),
    ],
)
def test_a_line_break_in_a_preview_or_test_recipient_is_refused(
    campaigns: Campaigns, path: str, body: dict[str, Any]
) -> None:
    created = campaigns.create()
    status, answer = campaigns.call("POST", path.format(id=created["id"]), body)
    assert status == 400 and answer["error"]["field"] in ("name", "email"), answer


def test_a_name_with_line_breaks_already_in_the_table_never_reaches_a_header(
    stack: Stack, campaigns: Campaigns
) -> None:
    # Given a subscriber whose name holds CR/LF (written before validation existed, or by hand)
    _put_subscriber(stack, "eve@example.com", "Eve\r\nBcc: victim@example.com\r\n\r\n<b>body</b>")
    created = campaigns.create(subject="News for {{ name }}", content="Hello {{ name }}")
    # When a test copy is sent to that subscriber
    status, sent = campaigns.call("POST", f"/admin/campaigns/{created['id']}/test", {"email": "eve@example.com"})
    assert status == 202, sent
    # Then the message has exactly its own headers: the name folded into the subject's one line
    [message] = _raw_mails()
    _assert_headers_are_only(message, CAMPAIGN_HEADERS)
    assert message["Subject"] == "[Test] News for Eve Bcc: victim@example.com <b>body</b>"
    assert message["To"] == "eve@example.com"
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "<b>body</b>" not in html and "&lt;b&gt;body&lt;/b&gt;" in html


def test_campaign_content_with_header_like_lines_stays_in_the_body(stack: Stack, campaigns: Campaigns) -> None:
    _put_subscriber(stack, "ada@example.com", "Ada")
    content = "Hello\r\n\r\nBcc: victim@example.com\r\n.\r\nSubject: forged\n--boundary\nContent-Type: text/html\n"
    created = campaigns.create(content=content)
    status, _ = campaigns.call("POST", f"/admin/campaigns/{created['id']}/test", {"email": "ada@example.com"})
    assert status == 202
    [message] = _raw_mails()
    _assert_headers_are_only(message, CAMPAIGN_HEADERS)
    assert message["Subject"] == "[Test] News"
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Bcc: victim@example.com" in text and "Subject: forged" in text


def test_the_mime_writer_refuses_a_sender_name_or_a_mail_with_a_line_break() -> None:
    mail = Mail(to="ada@example.com", subject="Hi", text="t", html="<p>h</p>")
    with pytest.raises(ValueError, match="single-line"):
        to_mime(mail, "news@example.com", "Mailroom\r\nBcc: victim@example.com")
    with pytest.raises(ValueError, match="single-line"):
        to_mime(mail, "news@example.com\r\nBcc: victim@example.com", "Mailroom")
    for fields in (
        {"subject": "Hi\r\nBcc: victim@example.com"},
        {"subject": "Hi\u2028there"},
        {"to": "ada@example.com\r\nBcc: victim@example.com"},
        {"headers": {"List-Unsubscribe": "<https://x>\r\nBcc: victim@example.com"}},
        {"headers": {"Bcc: victim@example.com\r\nX": "y"}},
    ):
        with pytest.raises(ValueError, match=r"single line|single-line"):
            Mail.model_validate({"to": "ada@example.com", "subject": "Hi", "text": "t", "html": "h"} | fields)


def test_a_long_unicode_subject_is_folded_into_encoded_words_and_reads_back_the_same() -> None:
    subject = "Zalgo Z̷̢͉a̵̧͎l̶̺̓g̸̣̈o̵̜͝ 🎉 مرحبا עולם " * 12
    mail = Mail(to="ada@example.com", subject=subject.strip(), text="t", html="h")
    raw = to_mime(mail, "news@example.com", "Mailroom \u2013 Nouvelles 📬")
    assert raw.isascii()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert b"\n" not in head.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == subject.strip()
    assert parsed["From"].addresses[0].display_name == "Mailroom \u2013 Nouvelles 📬"  # type: ignore[union-attr]
    _assert_headers_are_only(raw, MIME_HEADERS)


# ----------------------------------------------------------------------------- HTML injection

SCRIPT = "<script>alert(1)</script>"


def test_a_name_with_markup_is_escaped_in_the_confirmation_mail(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    app = load_function("RegistrationFunction")
    body = {"email": "eve@example.com", "name": f'{SCRIPT}<img src=x onerror="alert(2)">'}
    assert app.lambda_handler(_registration(body), context)["statusCode"] == 202
    _deliver_confirmations(stack, load_function, context)
    [message] = _raw_mails()
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    _assert_headers_are_only(message, MIME_HEADERS)


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_a_recipient_name_with_markup_is_escaped_in_the_preview(campaigns: Campaigns, fmt: str) -> None:
    content = "Hello {{ name }}" if fmt == "markdown" else "<p>Hello {{ name }}</p>"
    body = {"subject": "For {{ name }}", "content": content, "format": fmt, "name": SCRIPT}
    status, preview = campaigns.call("POST", "/admin/campaigns/preview", body)
    assert status == 200, preview
    assert SCRIPT not in preview["html"]
    assert "Hello &lt;script&gt;alert(1)&lt;/script&gt;" in preview["html"]
    assert preview["subject"] == f"For {SCRIPT}"  # a header is text, not HTML
    assert f"Hello {SCRIPT}" in preview["text"]  # text/plain shows what was written


def test_markup_in_a_subject_is_escaped_in_the_html_mail(campaigns: Campaigns) -> None:
    subject = '<img src=x onerror="alert(1)"> News'
    status, preview = campaigns.call("POST", "/admin/campaigns/preview", {"subject": subject, "content": "Hi"})
    assert status == 200, preview
    assert "<img src=x" not in preview["html"] and "&lt;img src=x" in preview["html"]


def test_raw_html_in_markdown_content_is_shown_as_text(campaigns: Campaigns) -> None:
    content = f'# Hi\n\n{SCRIPT}\n\n<a href="javascript:alert(1)">x</a> [y](javascript:alert(1))'
    status, preview = campaigns.call("POST", "/admin/campaigns/preview", {"subject": "S", "content": content})
    assert status == 200, preview
    assert "<script" not in preview["html"] and 'href="javascript:' not in preview["html"]


def test_a_name_that_looks_like_a_template_is_data(stack: Stack, campaigns: Campaigns) -> None:
    _put_subscriber(stack, "eve@example.com", "{{ 7 * 7 }}{% raw %}")
    created = campaigns.create(content="Hello {{ name }}")
    status, preview = campaigns.call("POST", f"/admin/campaigns/{created['id']}/preview", {"email": "eve@example.com"})
    assert status == 200, preview
    # the content without the footer, whose unsubscribe token can hold any digits ("49" too)
    body = preview["text"].split("\n--\n", 1)[0]
    assert body.strip() == "Hello {{ 7 * 7 }}{% raw %}"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
        ("{{ email.__class__ }}", "unsafe"),
        ("{{ cycler.__init__.__globals__ }}", "unsafe"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ 'x' * 1000000000 }}", "repeated"),
        ("{{ 2 ** 100000000 }}", "exponent"),
        ("{% for i in range(10000000) %}{% endfor %}", "range"),
        ("{% for i in range(10000) %}{{ 'x' * 99999 }}{% endfor %}", f"more than {MAX_RENDERED_BYTES} bytes"),
        ("{{ '%s %s' | format(1) }}", "TypeError"),
        ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "nested too deeply"),
        ("{{ name", "template error"),
    ],
)
def test_a_template_cannot_escape_the_sandbox_or_run_away(campaigns: Campaigns, content: str, reason: str) -> None:
    status, answer = campaigns.call("POST", "/admin/campaigns", {"subject": "S", "content": content})
    assert (status, answer["error"]["field"]) == (400, "content"), answer
    assert reason in answer["error"]["message"]
    assert campaigns.call("GET", "/admin/campaigns")[1]["items"] == []


def test_a_template_fault_at_send_time_is_a_content_error_not_a_crash() -> None:
    # A content that renders for the sample recipient but not for another: the worker
    # records that recipient failed (ContentError), it does not crash the batch.
    renderer = CampaignRenderer(
        CampaignContent("S", "{{ 10 // (name | length) }}", "markdown"), "Mailroom", fixed_links()
    )
    assert "5" in renderer.render(Recipient(id="a", email="a@example.com", name="Ad")).text
    with pytest.raises(ValueError, match="content: cannot be rendered: ZeroDivisionError"):
        renderer.render(Recipient(id="b", email="b@example.com", name=None))


# ----------------------------------------------------------------------------- oversized bodies


def test_an_oversized_sign_up_is_a_413_naming_the_limit(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    app = load_function("RegistrationFunction")
    body = {"email": "ada@example.com", "consent": "x" * 20_000}
    status, answer = _answer(app.lambda_handler(_registration(body), context))
    assert (status, answer["error"]["code"]) == (413, "body_too_large")
    assert "at most 10240" in answer["error"]["message"]


def test_an_oversized_one_click_unsubscribe_is_a_413(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    app = load_function("RegistrationFunction")
    event = load_event("registration_unsubscribe_one_click.json")
    event["body"] = "List-Unsubscribe=One-Click&" + "x" * 5000
    status, answer = _answer(app.lambda_handler(event, context))
    assert (status, answer["error"]["code"]) == (413, "body_too_large")
    assert "at most 4096" in answer["error"]["message"]


def test_an_oversized_admin_body_is_a_413_and_oversized_content_a_400(campaigns: Campaigns) -> None:
    status, answer = campaigns.call("POST", "/admin/campaigns", {"subject": "S", "content": "x" * 300_000})
    assert (status, answer["error"]["code"]) == (413, "body_too_large")
    assert "at most 262144" in answer["error"]["message"]
    # under the body's limit, over the content's: 400 naming the field and the limit
    body = json.dumps({"subject": "S", "content": "é" * 60_000}, ensure_ascii=False)  # 120 kB of UTF-8
    status, answer = campaigns.call("POST", "/admin/campaigns", body)
    assert (status, answer["error"]["field"]) == (400, "content")
    assert f"at most {MAX_CONTENT_BYTES}" in answer["error"]["message"]


def test_an_oversized_csv_import_is_a_413_naming_the_limit(campaigns: Campaigns) -> None:
    event = api_event("POST", "/admin/subscribers/import", "email\n" + "a@example.com\n" * 100_000)
    event["headers"] = {**event["headers"], "Content-Type": "text/csv"}
    response = campaigns.app("AdminFunction").lambda_handler(event, campaigns.context)
    status, answer = _answer(response)
    assert (status, answer["error"]["code"]) == (413, "body_too_large")
    assert "at most 1048576" in answer["error"]["message"]


def test_an_oversized_sign_in_is_a_413(stack: Stack, load_function: Loader, context: LambdaContext) -> None:
    app = load_function("AuthFunction")
    event = _registration({"email": "a@example.com", "password": "p" * 5000})
    event.update({"path": "/auth/sign-in", "resource": "/auth/sign-in"})
    status, answer = _answer(app.lambda_handler(event, context))
    assert (status, answer["error"]["code"]) == (413, "body_too_large")


# ----------------------------------------------------------------------------- nesting, numbers


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[" * 5000 + "]" * 5000, "nested too deeply"),  # within the 10 KiB a sign-up may weigh
        ('{"email": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
        ('{"email": "a@example.com", "name": ' + '{"a":' * 1500 + "1" + "}" * 1500 + "}", "nested too deeply"),
        ('{"name": ' + "[" * (MAX_JSON_DEPTH + 5) + "]" * (MAX_JSON_DEPTH + 5) + "}", f"more than {MAX_JSON_DEPTH}"),
        ('{"email": NaN}', "NaN is not a JSON number"),
        ('{"email": -Infinity}', "-Infinity is not a JSON number"),
        ('{"email": ' + "9" * 5000 + "}", "not valid JSON"),
    ],
    ids=["array", "in-a-field", "objects", "past-the-depth-limit", "nan", "infinity", "5000-digits"],
)
def test_deep_nesting_and_non_json_numbers_are_a_400(
    stack: Stack, load_function: Loader, context: LambdaContext, body: str, message: str
) -> None:
    app = load_function("RegistrationFunction")
    status, answer = _answer(app.lambda_handler(_registration(body), context))
    assert (status, answer["error"]["code"]) == (400, "invalid_json"), answer
    assert message in answer["error"]["message"]
    assert _subscribers(stack) == []


def test_deep_nesting_in_an_admin_body_is_a_400(campaigns: Campaigns) -> None:
    # 100,000 levels fit in the 256 KiB an admin body may weigh
    for body in ("[" * 100_000 + "]" * 100_000, '{"subject": ' + '{"a":' * 40_000 + "1" + "}" * 40_000 + "}"):
        status, answer = campaigns.call("POST", "/admin/campaigns", body)
        assert (status, answer["error"]["code"]) == (400, "invalid_json"), answer


@pytest.mark.parametrize("limit", ["1e999", "1" + "0" * 400, "5.0", '"5"', "true", "-1", "0", "10001"])
def test_a_count_that_is_not_a_small_whole_number_is_a_400(campaigns: Campaigns, limit: str) -> None:
    status, answer = campaigns.call("POST", "/admin/dead-letters/redrive", '{"limit": ' + limit + "}")
    assert (status, answer["error"]["field"]) == (400, "limit"), answer


@pytest.mark.parametrize("send_at", [0, 1_800_000_000, "1800000000", "2026-12-01", "2026-12-01T10:00", True])
def test_a_send_time_that_is_not_an_rfc3339_date_time_is_a_400(campaigns: Campaigns, send_at: Any) -> None:
    status, answer = campaigns.call("POST", "/admin/campaigns", {"subject": "S", "content": "C", "send_at": send_at})
    assert (status, answer["error"]["field"]) == (400, "send_at"), answer


# ----------------------------------------------------------------------------- Unicode


@pytest.mark.parametrize("surrogate", LONE_SURROGATES)
@pytest.mark.parametrize("field", ["email", "name", "consent", "website"])
def test_a_lone_surrogate_in_a_sign_up_is_a_400_naming_the_field(
    stack: Stack, load_function: Loader, context: LambdaContext, field: str, surrogate: str
) -> None:
    app = load_function("RegistrationFunction")
    fields = {"email": '"ada@example.com"', field: f'"Ada {surrogate}"'}
    body = "{" + ", ".join(f'"{key}": {value}' for key, value in fields.items()) + "}"
    status, answer = _answer(app.lambda_handler(_registration(body), context))
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (400, "invalid_field", field)
    assert "not valid Unicode" in answer["error"]["message"]
    assert _subscribers(stack) == []
    assert queue_messages(stack, "WelcomeQueue") == []


def test_a_lone_surrogate_in_a_key_is_a_400(stack: Stack, load_function: Loader, context: LambdaContext) -> None:
    app = load_function("RegistrationFunction")
    status, answer = _answer(app.lambda_handler(_registration('{"email": "a@example.com", "\\ud800": 1}'), context))
    assert (status, answer["error"]["field"]) == (400, "body")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/admin/campaigns", '{"subject": "News \\ud800", "content": "Hi"}', "subject"),
        ("/admin/campaigns", '{"subject": "News", "content": "Hi \\udfff there"}', "content"),
        ("/admin/campaigns/preview", '{"subject": "S", "content": "C", "name": "\\ud800"}', "name"),
        ("/admin/dead-letters/redrive", '{"queue": "\\ud800"}', "queue"),
    ],
)
def test_a_lone_surrogate_in_an_admin_body_is_a_400_naming_the_field(
    campaigns: Campaigns, path: str, body: str, field: str
) -> None:
    status, answer = campaigns.call("POST", path, body)
    assert (status, answer["error"]["field"]) == (400, field), answer


def test_a_lone_surrogate_in_a_password_never_reaches_cognito(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    app = load_function("AuthFunction")
    event = _registration('{"email": "a@example.com", "password": "pw\\ud800"}')
    event.update({"path": "/auth/sign-in", "resource": "/auth/sign-in"})
    status, answer = _answer(app.lambda_handler(event, context))
    assert (status, answer["error"]["field"]) == (400, "password")


def test_nul_and_control_characters_in_content_are_refused(campaigns: Campaigns) -> None:
    for character in ("\x00", "\x1b", "\x7f", "\x0c"):
        status, answer = campaigns.call("POST", "/admin/campaigns", {"subject": "S", "content": f"Hi{character}"})
        assert (status, answer["error"]["field"]) == (400, "content"), answer
        assert f"U+{ord(character):04X}" in answer["error"]["message"]
    # tabs and both line ends are text
    status, _ = campaigns.call("POST", "/admin/campaigns", {"subject": "S", "content": "a\tb\r\nc\nd"})
    assert status == 201


@pytest.mark.parametrize("override", BIDI_OVERRIDES, ids=repr)
def test_a_bidirectional_override_is_refused_in_names_and_subjects(
    stack: Stack, load_function: Loader, context: LambdaContext, campaigns: Campaigns, override: str
) -> None:
    app = load_function("RegistrationFunction")
    body = {"email": "eve@example.com", "name": f"Eve{override}moc.elpmaxe@da"}
    status, answer = _answer(app.lambda_handler(_registration(body), context))
    assert (status, answer["error"]["field"]) == (400, "name")
    status, answer = campaigns.call("POST", "/admin/campaigns", {"subject": f"News{override}", "content": "C"})
    assert (status, answer["error"]["field"]) == (400, "subject")


NAMES = [
    "Zoë Ångström-Ñúñez",
    "Z̷̢͉a̵̧͎l̶̺̓g̸̣̈o̵̜͝",  # combining marks
    "Ada 👩🏽‍💻🎉",  # emoji: a ZWJ sequence and a skin tone
    "\u200fمحمد بن موسى",  # right-to-left, with a right-to-left mark
    "李小龍",
    "a" * 100,
]


@pytest.mark.parametrize("name", NAMES)
def test_unicode_names_go_through_intact_to_the_table_and_the_mail(
    stack: Stack, load_function: Loader, context: LambdaContext, name: str
) -> None:
    app = load_function("RegistrationFunction")
    status, _ = _answer(app.lambda_handler(_registration({"email": "ada@example.com", "name": name}), context))
    assert status == 202
    [stored] = _subscribers(stack)
    assert stored["name"] == name
    _deliver_confirmations(stack, load_function, context)
    [message] = _raw_mails()
    assert name in message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    _assert_headers_are_only(message, MIME_HEADERS)


def test_an_escaped_surrogate_pair_is_one_emoji(stack: Stack, load_function: Loader, context: LambdaContext) -> None:
    app = load_function("RegistrationFunction")
    body = '{"email": "ada@example.com", "name": "Ada \\ud83d\\ude00"}'
    assert app.lambda_handler(_registration(body), context)["statusCode"] == 202
    assert _subscribers(stack)[0]["name"] == "Ada 😀"


def test_an_emoji_subject_reaches_the_mail_encoded_and_reads_back(stack: Stack, campaigns: Campaigns) -> None:
    _put_subscriber(stack, "ada@example.com", "Zoë")
    created = campaigns.create(subject="Nouvelles 🎉 für {{ name }} \u2013 ✉", content="Hi")
    status, _ = campaigns.call("POST", f"/admin/campaigns/{created['id']}/test", {"email": "ada@example.com"})
    assert status == 202
    [message] = _raw_mails()
    assert message["Subject"] == "[Test] Nouvelles 🎉 für Zoë \u2013 ✉"
    _assert_headers_are_only(message, CAMPAIGN_HEADERS)


@pytest.mark.parametrize(
    ("address", "stored"),
    [
        ("Ada@Bücher.example", "ada@xn--bcher-kva.example"),
        ("ada@bu\u0308cher.example", "ada@xn--bcher-kva.example"),  # the same domain, decomposed
        ("ada@xn--bcher-kva.example", "ada@xn--bcher-kva.example"),
        ("ada@пример.испытание", "ada@xn--e1afmkfd.xn--80akhbyknj4f"),
    ],
)
def test_internationalised_domains_are_stored_as_ascii(
    stack: Stack, load_function: Loader, context: LambdaContext, address: str, stored: str
) -> None:
    app = load_function("RegistrationFunction")
    assert app.lambda_handler(_registration({"email": address}), context)["statusCode"] == 202
    assert [subscriber["email"] for subscriber in _subscribers(stack)] == [stored]
    _deliver_confirmations(stack, load_function, context)
    [message] = _raw_mails()
    assert message["To"] == stored


def test_a_non_utf8_body_is_a_400(stack: Stack, load_function: Loader, context: LambdaContext) -> None:
    import base64

    app = load_function("RegistrationFunction")
    event = _registration("")
    event.update({"body": base64.b64encode(b'{"email": "a\xff@example.com"}').decode(), "isBase64Encoded": True})
    status, answer = _answer(app.lambda_handler(event, context))
    assert (status, answer["error"]["code"]) == (400, "invalid_json")
