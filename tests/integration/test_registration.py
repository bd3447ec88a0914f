"""POST /subscriptions end to end: API -> registration -> queue -> welcome worker -> SES outbox."""

from __future__ import annotations

import time
import uuid
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mailroom_local import Runtime
from tests.integration.conftest import admin_http, api_link, confirmation_link, http, mails_to, queues_idle, wait_for

pytestmark = pytest.mark.integration


def address(label: str = "reader") -> str:
    return f"{label}.{uuid.uuid4().hex[:10]}@example.org"


def test_health(runtime: Runtime) -> None:
    answer = http("GET", f"{runtime.url}/_local/health")
    assert answer.status == 200
    assert answer.json() == {"status": "ok"}


def test_signing_up_sends_one_confirmation_and_confirming_one_welcome_mail(runtime: Runtime) -> None:
    to = address("ann")
    posted = time.monotonic()
    answer = http("POST", f"{runtime.api_url}/subscriptions", {"email": to, "name": "Ann"})
    assert answer.status == 202, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["status"] == "accepted"

    link = confirmation_link(runtime, to, timeout=2.0 - (time.monotonic() - posted))
    (confirmation,) = mails_to(runtime, to)
    assert "confirm" in confirmation["subject"].lower() and "Ann" in confirmation["text"]
    assert link.startswith(f"{runtime.public_url}/confirm?token=")  # the web app's page
    assert "List-Unsubscribe" not in confirmation["headers"]

    # the web app's page at that link calls the API with its token (tests/browser drive the
    # page itself); the API's route also answers a browser with a page. The welcome follows, once.
    page = http("GET", api_link(runtime, link), headers={"Accept": "text/html"})
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "confirmed" in page.text
    mails = wait_for(lambda: mails_to(runtime, to, "welcome"), timeout=2.0)
    assert mails, "no welcome mail within 2 s of the confirmation"
    (mail,) = mails
    assert mail["to"] == [to]
    assert mail["from"] == "Mailroom <newsletter@example.com>"
    assert mail["text"] and "Ann" in mail["text"]
    assert mail["html"] and "<html" in mail["html"].lower() and "Ann" in mail["html"]
    assert mail["headers"]["Content-Type"].startswith("multipart/alternative")
    assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["sent_at"].endswith("Z")

    # the link again (a replay): the same answer, no second welcome mail
    again = http("GET", api_link(runtime, link), headers={"Accept": "application/json"})
    assert again.status == 200 and again.json()["status"] == "confirmed"
    assert wait_for(lambda: queues_idle(runtime, "WelcomeQueue"), timeout=5.0)
    time.sleep(0.5)
    assert len(mails_to(runtime, to, "welcome")) == 1


def test_registering_the_same_address_again_sends_nothing_more_for_a_while(runtime: Runtime) -> None:
    to = address("bob")
    first = http("POST", f"{runtime.api_url}/subscriptions", {"email": to})
    assert first.status == 202, first.text
    confirmation_link(runtime, to)

    again = http("POST", f"{runtime.api_url}/subscriptions", {"email": to.upper(), "name": "Bob"})
    assert (again.status, again.json()) == (first.status, first.json())  # the same answer
    assert wait_for(lambda: queues_idle(runtime, "WelcomeQueue"), timeout=5.0)
    time.sleep(1.0)
    assert len(mails_to(runtime, to)) == 1  # within the resend window: no second confirmation mail


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b'{"email": "broken@example.org"', "application/json", 400, ["json"]),
        (b'{"name": "No Email"}', "application/json", 400, ["email"]),
        (b'{"email": "not-an-address"}', "application/json", 400, ["email"]),
        (b'{"email": "x@example.org", "name": "' + b"x" * 11_000 + b'"}', "application/json", 413, ["bytes"]),
        (b"email=someone@example.org", "application/x-www-form-urlencoded", 415, ["content-type"]),
        (b'{"email": "extra@example.org", "admin": true}', "application/json", 400, ["admin"]),
        (b"", "application/json", 400, ["empty"]),
        (b"[1, 2]", "application/json", 400, ["object"]),
    ],
    ids=[
        "invalid-json",
        "missing-email",
        "invalid-email",
        "body-over-10kb",
        "wrong-content-type",
        "unknown-field",
        "empty-body",
        "not-an-object",
    ],
)
def test_bad_input_gets_a_4xx_json_error_naming_the_problem(
    runtime: Runtime, body: bytes, content_type: str, status: int, words: list[str]
) -> None:
    answer = http("POST", f"{runtime.api_url}/subscriptions", body, {"Content-Type": content_type})
    assert answer.status == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    text = f"{error['message']} {error.get('field', '')}".lower()
    for word in words:
        assert word in text, error
    assert "traceback" not in answer.text.lower()


def test_unknown_routes_answer_like_api_gateway(runtime: Runtime) -> None:
    for method, path in [("GET", "/nothing-here"), ("GET", "/subscriptions"), ("DELETE", "/subscriptions")]:
        answer = http(method, f"{runtime.api_url}{path}")
        assert answer.status == 403, (method, path)
        assert answer.json() == {"message": "Missing Authentication Token"}


def test_a_body_over_10_mb_is_refused_with_413(runtime: Runtime) -> None:
    parts = urlsplit(runtime.url)
    connection = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request(
            "POST",
            "/api/subscriptions",
            body=b"x" * (10 * 1024 * 1024 + 1),
            headers={"Content-Type": "application/json"},
        )
        answer = connection.getresponse()
        assert answer.status == 413
        assert b"Request Too Long" in answer.read()
    finally:
        connection.close()


def test_the_web_app_is_served_at_the_root_with_client_side_routes_and_its_security_headers(runtime: Runtime) -> None:
    index = http("GET", f"{runtime.url}/")
    assert index.status == 200 and index.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/js/app.js">' in index.text and 'lang="en"' in index.text
    # client-side routes get the app (CloudFront's viewer-request function does the same)
    for route in ("/check-inbox", "/confirm?token=abc", "/unsubscribe?token=abc", "/admin", "/admin/campaigns/x1"):
        page = http("GET", f"{runtime.url}{route}")
        assert page.status == 200 and page.text == index.text, route
    # files keep their types; a missing file is S3's 403 (through CloudFront), not the app
    script = http("GET", f"{runtime.url}/js/app.js")
    assert script.status == 200 and script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert http("GET", f"{runtime.url}/css/app.css").headers["content-type"].startswith("text/css")
    assert http("GET", f"{runtime.url}/js/missing.js").status == 403
    assert http("GET", f"{runtime.url}/../template.yaml").status == 403
    assert http("GET", f"{runtime.url}/.gitignore").status == 403
    assert http("POST", f"{runtime.url}/").status == 403  # the default behavior: GET and HEAD only
    assert http("GET", f"{runtime.url}/api").text == index.text  # /api/* is the API, /api is the app's
    # the headers of the template's response headers policy, as CloudFront adds them
    headers = index.headers
    declared = runtime.stack.response_headers()
    assert "script-src 'self'" in declared["Content-Security-Policy"]
    for name, value in declared.items():
        assert headers[name.lower()] == value, name
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
    assert http("GET", f"{runtime.url}/js/missing.js").headers["x-frame-options"] == "DENY"
    # the same origin serves the API under /api
    assert admin_http(runtime, "GET", f"{runtime.api_url}/admin/campaigns?limit=1").status == 200


def test_the_web_app_loads_nothing_from_other_origins() -> None:
    web = Path(__file__).resolve().parents[2] / "web"
    files = [path for path in web.rglob("*") if path.is_file()]
    assert any(path.name == "index.html" for path in files)
    for path in files:
        text = path.read_text(encoding="utf-8")
        text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace name, not a fetch
        assert "http://" not in text and "https://" not in text, path
        assert "//cdn" not in text and "fonts.googleapis" not in text, path


def test_local_routes_list_schedules_and_queues(runtime: Runtime) -> None:
    schedules = {s["name"]: s for s in http("GET", f"{runtime.url}/_local/schedules").json()}
    assert set(schedules) == {"DailyNewsletter", "Recovery"}
    assert schedules["Recovery"]["expression"] == "rate(5 minutes)"
    daily = schedules["DailyNewsletter"]
    assert daily["expression"] == "cron(0 10 * * ? *)"
    assert daily["timezone"] == "UTC"
    assert daily["target"] == "NewsletterDispatcherFunction"
    assert daily["next_fire_time"].endswith("T10:00:00Z")

    queues = {q["name"]: q for q in http("GET", f"{runtime.url}/_local/queues").json()}
    assert set(queues) == {
        "WelcomeQueue",
        "WelcomeDeadLetterQueue",
        "NewsletterQueue",
        "NewsletterDeadLetterQueue",
        "DispatcherFailureQueue",
        "FanoutQueue",
        "FanoutDeadLetterQueue",
        "SesEventsQueue",
        "SesEventsDeadLetterQueue",
        "NewsletterDispatcherFunctionDailyNewsletterQueue",
        "NewsletterDispatcherFunctionRecoveryQueue",
    }
    assert queues["WelcomeDeadLetterQueue"]["dead_letter_queue_of"] == "WelcomeQueue"
    assert queues["SesEventsDeadLetterQueue"]["dead_letter_queue_of"] == "SesEventsQueue"
    for queue in queues.values():
        assert isinstance(queue["ApproximateNumberOfMessages"], int)
        assert isinstance(queue["ApproximateNumberOfMessagesNotVisible"], int)


def test_firing_an_unknown_schedule_is_a_404(runtime: Runtime) -> None:
    answer = http("POST", f"{runtime.url}/_local/schedules/NoSuchSchedule")
    assert answer.status == 404
    assert "NoSuchSchedule" in answer.json()["message"]


def test_the_outbox_can_be_cleared(runtime: Runtime) -> None:
    to = address("cleared")
    assert http("POST", f"{runtime.api_url}/subscriptions", {"email": to}).status == 202
    assert wait_for(lambda: mails_to(runtime, to), timeout=2.0)
    deleted = http("DELETE", f"{runtime.url}/_local/outbox")
    assert deleted.status == 200 and deleted.json()["deleted"] >= 1
    assert http("GET", f"{runtime.url}/_local/outbox").json() == []
