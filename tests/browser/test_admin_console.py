"""The admin console in a real browser: sign in, compose a campaign with its live preview,
send it and watch its progress reach 100%; import and search subscribers; see a dead letter
with its reason and redrive it."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from mailroom_local import Runtime
from tests.browser.conftest import docs_screenshot
from tests.integration.conftest import admin_http, http, mails_to, queues_idle, wait_for
from tests.support import TEMPLATE

pytestmark = pytest.mark.integration

SES_RATE = 10.0  # mails/s that SES reports here: a campaign of 60 takes about 6 s, so its progress shows


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    """The application, with SES reporting a slow send rate that the workers pace to."""
    started = Runtime(TEMPLATE, port=0, quiet=True, ses_max_send_rate=SES_RATE).start()
    try:
        yield started
    finally:
        started.stop()


def sign_in(runtime: Runtime, page: Page, path: str = "/admin") -> None:
    page.goto(f"{runtime.url}{path}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to the admin console")
    fill_credentials(runtime, page)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{runtime.url}{path}")


def fill_credentials(runtime: Runtime, page: Page, password: str | None = None) -> None:
    """The local first admin's email and password (the runtime created it in the user pool)."""
    assert runtime.admin is not None
    page.get_by_label("Email").fill(runtime.admin.email)
    page.get_by_label("Password").fill(password or runtime.admin.password)


def import_subscribers(runtime: Runtime, people: list[tuple[str, str]]) -> None:
    csv = "email,name\r\n" + "".join(f"{email},{name}\r\n" for email, name in people)
    answer = admin_http(
        runtime, "POST", f"{runtime.api_url}/admin/subscribers/import?confirmed=true", csv, {"Content-Type": "text/csv"}
    )
    assert answer.status == 200 and answer.json()["imported"] == len(people), answer.text


def test_the_console_asks_for_a_sign_in_and_returns_to_the_page_asked_for(runtime: Runtime, page: Page) -> None:
    page.goto(f"{runtime.url}/admin/dead-letters")
    assert page.url.startswith(f"{runtime.url}/admin/sign-in?next=")
    page.get_by_role("button", name="Sign in").click()  # empty
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    fill_credentials(runtime, page)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{runtime.url}/admin/dead-letters")
    expect(page.get_by_role("heading", level=1)).to_have_text("Dead letters")
    # signing out forgets the token
    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{runtime.url}/admin/campaigns")
    assert page.url.startswith(f"{runtime.url}/admin/sign-in")


def test_compose_with_live_preview_send_now_and_watch_the_progress_reach_100_percent(
    runtime: Runtime, page: Page
) -> None:
    tag = uuid.uuid4().hex[:6]
    people = [(f"reader{i}.{tag}@example.org", f"Reader {i}") for i in range(60)]
    import_subscribers(runtime, people)
    subscribed = admin_http(runtime, "GET", f"{runtime.api_url}/admin/subscribers?status=subscribed&limit=200").json()[
        "items"
    ]
    sign_in(runtime, page)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Campaigns")
    page.get_by_role("link", name="New campaign").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New campaign")

    subject = f"Autumn news {tag}"
    page.get_by_label("Subject").fill(subject + " for {{ name }}")
    page.get_by_label("Content").fill("# Hello {{ name }}\n\nThe leaves are **falling**.")
    # the preview follows the typing: the sample recipient's subject and the rendered HTML
    expect(page.get_by_test_id("preview-subject")).to_have_text(f"{subject} for Ada Lovelace")
    frame = page.frame_locator("[data-testid=preview-frame]")
    expect(frame.locator("h1")).to_have_text("Hello Ada Lovelace")
    expect(frame.locator("strong")).to_have_text("falling")

    # a template error is shown at its field, and the preview says so
    page.get_by_label("Content").fill("Hello {{ nobody }}")
    expect(page.get_by_label("Content")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Content").fill("# Hello {{ name }}\n\nThe leaves are **falling**.")
    expect(page.get_by_label("Content")).not_to_have_attribute("aria-invalid", "true")
    expect(frame.locator("h1")).to_have_text("Hello Ada Lovelace")
    docs_screenshot(page, "campaign-compose")

    page.get_by_role("button", name="Send now").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # Enter alone sends nothing
    dialog.get_by_role("button", name="Send now").click()

    page.wait_for_url(re.compile(r"/admin/campaigns/(?!new$)[\w-]+$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{subject} for {{{{ name }}}}")
    # while it sends: the send rate over the last seconds and the time left
    expect(page.get_by_test_id("campaign-status")).to_have_text("sending")
    # (0.0 mails/s and "waiting for the first results" until the first mails are out: a busy
    # machine can take seconds to get there)
    expect(page.get_by_test_id("send-rate")).to_have_text(re.compile(r"^(?!0\.0 )[\d.,]+ mails/s$"), timeout=30_000)
    expect(page.get_by_test_id("eta")).to_have_text(re.compile(r"^\d+ (s|min)"), timeout=10_000)
    docs_screenshot(page, "campaign-progress", full_page=True)
    expect(page.get_by_test_id("progress-percent")).to_have_text("100%", timeout=30_000)
    expect(page.get_by_test_id("campaign-status")).to_have_text("sent", timeout=10_000)
    expect(page.get_by_test_id("eta")).to_have_text("done")
    expect(page.get_by_test_id("send-rate")).to_have_text(re.compile(r"^[\d.,]+ mails/s on average$"))
    expect(page.get_by_test_id("counter-recipients")).to_have_text(str(len(subscribed)))
    expect(page.get_by_test_id("counter-sent")).to_have_text(str(len(subscribed)))
    expect(page.get_by_test_id("counter-failed")).to_have_text("0")
    expect(page.get_by_role("progressbar")).to_have_attribute("value", str(len(subscribed)))

    # what the page shows is what was sent
    assert wait_for(lambda: queues_idle(runtime, "NewsletterQueue", "FanoutQueue"), timeout=10.0)
    for email, name in people:
        (mail,) = mails_to(runtime, email, subject.lower())
        assert mail["subject"] == f"{subject} for {name}"
    campaign_id = page.url.rsplit("/", 1)[-1]
    campaign = admin_http(runtime, "GET", f"{runtime.api_url}/admin/campaigns/{campaign_id}").json()
    assert campaign["status"] == "sent" and campaign["counters"]["sent"] == len(subscribed)

    # the overview's figures include it
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Overview").click()
    expect(page.get_by_test_id("figure-campaigns-sent")).to_have_text("1")
    expect(page.get_by_test_id("figure-mails-sent")).to_have_text(str(len(subscribed)))
    row = page.get_by_test_id("campaign-progress").get_by_role("row").filter(has_text=subject)
    expect(row.get_by_test_id("progress-done")).to_have_text(f"{len(subscribed)} of {len(subscribed)} (100%)")
    # (the overview's screenshot is taken by test_admin_figures, once the task figures have settled)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns").click()
    expect(page.get_by_role("row").filter(has_text=subject)).to_contain_text("sent")
    docs_screenshot(page, "admin-campaigns")


def test_import_a_csv_file_then_find_a_subscriber_by_name(runtime: Runtime, page: Page) -> None:
    tag = uuid.uuid4().hex[:6]
    sign_in(runtime, page, "/admin/subscribers")
    grace = f"grace.{tag}@example.org"
    csv = f"email,name\r\n{grace},Grace Hopper\r\nnot-an-address,Nobody\r\n{grace},Again\r\n"
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": csv.encode()}]
    )
    page.get_by_label("Import as confirmed").check()
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_test_id("import-imported")).to_have_text("1")
    expect(page.get_by_test_id("import-rejected")).to_have_text("1")
    expect(page.get_by_test_id("import-duplicates")).to_have_text("1")
    expect(page.get_by_test_id("import-report")).to_contain_text("not-an-address")

    page.get_by_label("Search").fill("hopper")
    page.get_by_role("button", name="Search").click()
    row = page.get_by_role("region", name="Subscribers").get_by_role("row").filter(has_text=grace)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("subscribed")
    assert "q=hopper" in page.url  # a reload keeps the search
    docs_screenshot(page, "admin-subscribers", full_page=True)


def test_a_dead_letter_is_shown_with_its_reason_and_redriven(runtime: Runtime, page: Page) -> None:
    sqs = runtime.client("sqs")
    assert runtime.provisioned is not None
    queue_url = runtime.provisioned.queues["WelcomeDeadLetterQueue"].url
    task = {"kind": "welcome", "subscriber_id": f"gone-{uuid.uuid4().hex[:6]}", "email": "gone@example.org"}
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps(task),
        MessageAttributes={"error": {"DataType": "String", "StringValue": "MessageRejected: sender not verified"}},
    )
    sign_in(runtime, page, "/admin/dead-letters")
    expect(page.get_by_test_id("dead-letters-welcome")).to_have_text("1")
    expect(page.get_by_role("row").filter(has_text="MessageRejected: sender not verified")).to_have_count(1)
    docs_screenshot(page, "admin-dead-letters")
    page.get_by_role("button", name="Redrive all").click()
    page.get_by_role("dialog").get_by_role("button", name="Redrive").click()
    expect(page.get_by_test_id("redriven")).to_contain_text("1")
    expect(page.get_by_test_id("remaining")).to_contain_text("0")


def _refuse_admin_calls(page: Page) -> None:
    """From now on the admin API answers 401, as it will for an expired or revoked token."""
    page.route(
        "**/api/admin/**",
        lambda route: route.fulfill(status=401, content_type="application/json", body='{"message": "Unauthorized"}'),
    )


def test_a_wrong_password_is_said_at_the_sign_in_form(runtime: Runtime, page: Page) -> None:
    page.goto(f"{runtime.url}/admin/subscribers")
    fill_credentials(runtime, page, password="Not-the-password-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("main")).to_contain_text("Wrong email or password.")
    assert page.url == f"{runtime.url}/admin/sign-in?next=%2Fadmin%2Fsubscribers"  # not nested, not "expired"
    assert page.evaluate("sessionStorage.getItem('mailroom.admin.token')") is None


def test_a_first_sign_in_with_the_temporary_password_chooses_a_new_one(runtime: Runtime, page: Page) -> None:
    """What scripts/create_admin.py sets up: Cognito mails a temporary password; the first
    sign-in replaces it, then the console is open."""
    assert runtime.admin is not None
    cognito = runtime.client("cognito-idp")
    address = f"new-admin-{uuid.uuid4().hex[:6]}@example.com"
    cognito.admin_create_user(
        UserPoolId=runtime.admin.user_pool_id,
        Username=address,
        TemporaryPassword="Temporary-Pass-1",
        MessageAction="SUPPRESS",
        UserAttributes=[{"Name": "email", "Value": address}, {"Name": "email_verified", "Value": "true"}],
    )
    cognito.admin_add_user_to_group(UserPoolId=runtime.admin.user_pool_id, Username=address, GroupName="admins")
    page.goto(f"{runtime.url}/admin/campaigns")
    page.get_by_label("Email").fill(address)
    page.get_by_label("Password").fill("Temporary-Pass-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose your password")
    page.get_by_label("New password", exact=True).fill("My-own-password-42")
    page.get_by_label("Repeat the new password").fill("My-own-password-4")
    page.get_by_role("button", name="Set password and sign in").click()
    expect(page.get_by_label("Repeat the new password")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Repeat the new password").fill("My-own-password-42")
    page.get_by_role("button", name="Set password and sign in").click()
    page.wait_for_url(f"{runtime.url}/admin/campaigns")
    expect(page.get_by_role("heading", level=1)).to_have_text("Campaigns")
    # the new password is the one now
    signed_in = http(
        "POST", f"{runtime.api_url}/auth/sign-in", {"email": address, "password": "My-own-password-42"}
    ).json()
    assert "id_token" in signed_in


def test_an_expired_sign_in_returns_to_the_draft_being_written(runtime: Runtime, page: Page) -> None:
    sign_in(runtime, page, "/admin/campaigns/new")
    page.get_by_label("Subject").fill("Half written")
    page.get_by_label("Content").fill("The first lines")
    expect(page.get_by_test_id("preview-subject")).to_have_text("Half written")
    _refuse_admin_calls(page)
    page.get_by_label("Content").fill("The first lines, and more")  # the preview's call gets the 401
    page.wait_for_url(re.compile(r"/admin/sign-in\?next=%2Fadmin%2Fcampaigns%2Fnew&expired=1$"))
    expect(page.locator("main")).to_contain_text("Your sign-in has expired")
    page.unroute("**/api/admin/**")
    fill_credentials(runtime, page)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{runtime.url}/admin/campaigns/new")
    expect(page.get_by_label("Subject")).to_have_value("Half written")
    expect(page.get_by_label("Content")).to_have_value("The first lines, and more")
    expect(page.locator("main")).to_contain_text("Your unsaved changes were restored.")


def test_send_now_that_fails_leaves_a_scheduled_campaign_scheduled(runtime: Runtime, page: Page) -> None:
    created = admin_http(
        runtime,
        "POST",
        f"{runtime.api_url}/admin/campaigns",
        {"subject": "Later", "content": "Hi {{ name }}", "send_at": "2031-01-01T10:00:00Z"},
    ).json()
    assert created["status"] == "scheduled"
    sign_in(runtime, page, f"/admin/campaigns/{created['id']}/edit")
    page.route(
        f"**/api/admin/campaigns/{created['id']}/send",
        lambda route: route.fulfill(
            status=503, content_type="application/json", body='{"error": {"code": "unavailable", "message": "Busy."}}'
        ),
    )
    page.get_by_role("button", name="Send now").click()
    page.get_by_role("dialog").get_by_role("button", name="Send now").click()
    expect(page.locator("main")).to_contain_text("Busy.")
    campaign = admin_http(runtime, "GET", f"{runtime.api_url}/admin/campaigns/{created['id']}").json()
    assert (campaign["status"], campaign["send_at"]) == ("scheduled", created["send_at"])
    assert campaign["send_at"].startswith("2031-01-01T10:00:00")


def test_a_csv_file_that_is_not_utf8_is_refused_not_garbled(runtime: Runtime, page: Page) -> None:
    sign_in(runtime, page, "/admin/subscribers")
    latin1 = f"email,name\r\njose.{uuid.uuid4().hex[:6]}@example.org,José\r\n".encode("latin-1")
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "latin1.csv", "mimeType": "text/csv", "buffer": latin1}]
    )
    page.get_by_role("button", name="Import").click()
    expect(page.locator("main")).to_contain_text("not valid UTF-8")
    assert "jose." not in admin_http(runtime, "GET", f"{runtime.api_url}/admin/subscribers/export").text
