"""The overview's monitoring figures in a real browser: after a sign-up, a dead-lettered task
and a campaign, the "Last hour and last day" tables and the campaigns' progress show what
GET /admin/metrics answers; while the campaign sends, its rate and time left; and when
CloudWatch cannot be read, the route's message in place of the task figures."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from mailroom_local import Runtime
from tests.browser.conftest import docs_screenshot
from tests.browser.test_admin_console import import_subscribers, sign_in
from tests.integration.conftest import admin, admin_http, queues_idle, subscribe, wait_for
from tests.support import TEMPLATE

pytestmark = pytest.mark.integration

SES_RATE = 10.0  # mails/s: a campaign of 40 takes about 4 s, so it is seen sending
READERS = 40
# web/js/views/admin/figures.js: TASK_TYPES and ERROR_TYPES, as the overview's test ids name them
TASK_TYPES = ("confirmation", "welcome", "newsletter", "newsletter_fanout", "newsletter_dispatch", "ses_event")
ERROR_TYPES = ("task_errors", "dead_lettered", "failed", "retried", "throttled", "uncertain")
# what reporting.report() answers when CloudWatch cannot be read
UNAVAILABLE = "The task metrics could not be read from CloudWatch; try again shortly."
NONE = "\u2013"  # the console's mark for "no value" (an en dash)


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    started = Runtime(TEMPLATE, port=0, quiet=True, ses_max_send_rate=SES_RATE).start()
    try:
        yield started
    finally:
        started.stop()


def metrics(runtime: Runtime) -> dict[str, Any]:
    answer: dict[str, Any] = admin(runtime, "GET", "/metrics")
    return answer


def _figures_only(answer: dict[str, Any]) -> Any:
    """The answer without its clock (generated_at, the windows' bounds, the campaigns' ETA)."""
    windows = {key: window["task_types"] | {"totals": window["totals"]} for key, window in answer["windows"].items()}
    clock = ("rate_per_second", "eta")
    campaigns = [{k: v for k, v in campaign.items() if k not in clock} for campaign in answer["campaigns"]]
    return windows, campaigns


def settled_metrics(runtime: Runtime, ready: Any) -> dict[str, Any]:
    """GET /admin/metrics once ``ready(answer)`` holds and two answers a second apart agree
    (a function's metrics reach CloudWatch when its invocation prints them, SES events later)."""
    previous: list[Any] = [None]

    def probe() -> dict[str, Any] | None:
        answer = metrics(runtime)
        if answer["windows"] is None or not ready(answer):
            return None
        same = _figures_only(answer) == previous[0]
        previous[0] = _figures_only(answer)
        return answer if same else None

    answer = wait_for(probe, timeout=60.0, interval=1.0)  # a not-ready SES event comes again 15 s later
    assert answer, metrics(runtime)
    return answer


SIMULATED_EVENTS = 3


def number(value: int | None) -> str:
    return NONE if value is None else f"{value:,}"


def millis(value: float | None) -> str:
    """ui.js millis(): one decimal below 10 ms, else whole ms."""
    if value is None:
        return NONE
    return f"{value:.1f} ms" if value < 10 else f"{math.floor(value + 0.5):,} ms"


def expected_cells(window: dict[str, Any]) -> dict[str, str]:
    """The text of each cell of a window's table, by test id suffix (without tasks-<window>-)."""
    rows: dict[str, dict[str, Any]] = {
        task_type: {
            "processed": figures["processed"],
            "mails-sent": figures["mails"]["sent"] if "mails" in figures else None,
            "p50": figures["processing_ms"]["p50"],
            "p95": figures["processing_ms"]["p95"],
            "errors": figures["errors"],
        }
        for task_type, figures in window["task_types"].items()
    }
    totals = window["totals"]
    rows["total"] = {
        "processed": totals["processed"],
        "mails-sent": totals["mails_sent"],
        "p50": None,
        "p95": None,
        "errors": totals["errors"],
    }
    cells: dict[str, str] = {}
    for task_type, row in rows.items():
        for key in ("processed", "mails-sent"):
            cells[f"{task_type}-{key}"] = number(row[key])
        for key in ("p50", "p95"):
            cells[f"{task_type}-{key}"] = millis(row[key])
        for error in ERROR_TYPES:
            cells[f"{task_type}-{error.replace('_', '-')}"] = number(row["errors"].get(error))
    return cells


def shown_cells(page: Page, window: str) -> dict[str, str]:
    prefix = f"tasks-{window}-"
    found: dict[str, str] = page.eval_on_selector_all(
        f"[data-testid^='{prefix}']",
        "nodes => Object.fromEntries(nodes.map(node => [node.dataset.testid, node.textContent]))",
    )
    return {key.removeprefix(prefix): text for key, text in found.items()}


def refresh(page: Page) -> None:
    """The overview's Refresh, and its figures drawn again."""
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("main").get_by_role("status")).to_have_text(re.compile(r"^Figures as of"))


def campaign_row(page: Page, subject: str) -> Any:
    return page.get_by_test_id("campaign-progress").get_by_role("row").filter(has_text=subject)


def test_the_overview_shows_the_figures_of_get_admin_metrics(runtime: Runtime, page: Page) -> None:
    tag = uuid.uuid4().hex[:6]
    # a sign-up (a confirmation and a welcome mail; the simulator address brings SES events too)
    subscribe(runtime, f"success+{tag}@simulator.amazonses.com", "Sim")
    # a task the welcome worker cannot read: dead-lettered, an error the tables must highlight
    runtime.client("sqs").send_message(QueueUrl=runtime.stack.physical_name("WelcomeQueue"), MessageBody="{not json")
    import_subscribers(runtime, [(f"watcher{i}.{tag}@example.org", f"Watcher {i}") for i in range(READERS)])
    recipients = READERS + 1

    subject = f"Figures {tag}"
    campaign_id = admin(runtime, "POST", "/campaigns", {"subject": subject, "content": "Hello {{ name }}"})["id"]
    sign_in(runtime, page)
    admin(runtime, "POST", f"/campaigns/{campaign_id}/send")

    # while it sends (SES allows 10 mails/s): its rate and the time left, from the metrics' ETA
    def sending_with_an_eta() -> bool:
        refresh(page)
        row = campaign_row(page, subject)
        return row.count() == 1 and bool(re.match(r"^\d+ (s|min)", row.get_by_test_id("progress-eta").inner_text()))

    seen = wait_for(sending_with_an_eta, timeout=20.0, interval=0.3)
    assert seen, page.get_by_test_id("campaign-progress").inner_text()
    row = campaign_row(page, subject)
    expect(row.get_by_role("cell").first).to_have_text("sending")
    expect(row.get_by_test_id("progress-rate")).to_have_text(re.compile(r"^[\d.,]+ mails/s$"))
    expect(row.get_by_test_id("progress-done")).to_have_text(re.compile(rf"^\d+ of {recipients} \(\d+%\)$"))

    def sent() -> bool:
        return bool(admin(runtime, "GET", f"/campaigns/{campaign_id}")["status"] == "sent")

    assert wait_for(sent, timeout=30.0, interval=0.5), "the campaign did not finish"
    assert wait_for(lambda: queues_idle(runtime, "NewsletterQueue", "FanoutQueue", "WelcomeQueue"), timeout=10.0)

    def ready(answer: dict[str, Any]) -> bool:
        hour = answer["windows"]["hour"]["task_types"]
        return bool(
            hour["newsletter"]["mails"]["sent"] == recipients
            and hour["welcome"]["mails"]["sent"] == 1
            and hour["welcome"]["errors"]["dead_lettered"] == 1
            # the simulator address's three mails (confirmation, welcome, newsletter) bring a
            # delivery event each; they come through SesEventsQueue in batches, seconds apart
            # (one that finds its record still being sent comes again 15 s later)
            and hour["ses_event"]["processed"] == SIMULATED_EVENTS
        )

    answer = settled_metrics(runtime, ready)
    refresh(page)

    # the tables are the answer: every cell of both windows, totals included
    for window in ("hour", "day"):
        assert shown_cells(page, window) == expected_cells(answer["windows"][window]), window
        expect(page.get_by_test_id(f"tasks-{window}-newsletter-mails-sent")).to_have_text(str(recipients))
        expect(page.get_by_test_id(f"tasks-{window}-confirmation-mails-sent")).to_have_text("1")
    expect(page.get_by_test_id("tasks-hour-newsletter_dispatch-mails-sent")).to_have_text(NONE)  # sends no mail
    # errors: only the one that happened stands out
    expect(page.get_by_test_id("tasks-hour-welcome-dead-lettered")).to_have_class(re.compile(r"\bnonzero\b"))
    expect(page.get_by_test_id("tasks-hour-total-dead-lettered")).to_have_text("1")
    error_ids = tuple(f"-{error.replace('_', '-')}" for error in ERROR_TYPES)
    errors = [value for key, value in expected_cells(answer["windows"]["hour"]).items() if key.endswith(error_ids)]
    highlighted = page.locator("[data-testid^='tasks-hour-'].nonzero")
    expect(highlighted).to_have_count(len([value for value in errors if value not in ("0", NONE)]))
    expect(page.get_by_test_id("tasks-hour-welcome-task-errors")).to_have_class(re.compile(r"\bzero\b"))
    # the tables are labelled for assistive technology
    tasks = page.get_by_role("region", name="Last hour and last day")
    expect(tasks.get_by_role("table")).to_have_count(2)
    expect(tasks.get_by_role("rowheader", name="Newsletter send")).to_have_count(2)
    expect(tasks.get_by_role("columnheader", name="p95 time")).to_have_count(2)

    # the campaign: done = recipients, its average rate, finished
    (progress,) = [c for c in answer["campaigns"] if c["id"] == campaign_id]
    assert progress["done"] == progress["recipients"] == recipients and progress["rate_per_second"] > 0
    row = campaign_row(page, subject)
    expect(row.get_by_test_id("progress-done")).to_have_text(f"{recipients} of {recipients} (100%)")
    expect(row.get_by_test_id("progress-sent")).to_have_text(str(recipients))
    expect(row.get_by_test_id("progress-eta")).to_have_text(re.compile(r"^done at "))
    rate = row.get_by_test_id("progress-rate").inner_text()
    assert re.fullmatch(r"[\d.,]+ mails/s", rate), rate
    assert (
        abs(float(rate.split()[0].replace(",", "")) - progress["rate_per_second"])
        <= 0.051 + progress["rate_per_second"] * 0.01
    ), (rate, progress)
    # and the listing-based figures are still there
    expect(page.get_by_test_id("figure-dead-letters-welcome")).to_have_text("1")
    expect(page.get_by_test_id("figure-campaigns-sent")).to_have_text("1")
    expect(page.locator("main")).not_to_contain_text("could not be read")
    docs_screenshot(page, "admin-overview", full_page=True)


def test_when_cloudwatch_cannot_be_read_the_overview_says_so_in_place_of_the_task_figures(
    runtime: Runtime, page: Page
) -> None:
    real = admin_http(runtime, "GET", f"{runtime.api_url}/admin/metrics").json()
    stubbed = {**real, "windows": None, "unavailable": UNAVAILABLE}
    page.route(
        "**/api/admin/metrics",
        lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(stubbed)),
    )
    sign_in(runtime, page)
    expect(page.get_by_test_id("tasks-unavailable")).to_have_text(UNAVAILABLE)
    expect(page.get_by_role("region", name="Last hour and last day").get_by_role("table")).to_have_count(0)
    # not an error page: the other figures are there, and nothing says a part failed
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    expect(page.get_by_role("region", name="Dead letters")).to_be_visible()
    expect(page.get_by_role("region", name="Subscribers")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("could not be read (")


def test_when_the_metrics_route_fails_the_rest_of_the_overview_still_shows(runtime: Runtime, page: Page) -> None:
    page.route(
        "**/api/admin/metrics",
        lambda route: route.fulfill(
            status=503, content_type="application/json", body='{"error": {"code": "unavailable", "message": "Busy."}}'
        ),
    )
    sign_in(runtime, page)
    expect(page.locator("main")).to_contain_text("Some figures could not be read (metrics: Busy.)")
    expect(page.get_by_role("region", name="Last hour and last day")).to_contain_text("Not available right now.")
    expect(page.get_by_role("region", name="Subscribers")).to_be_visible()
