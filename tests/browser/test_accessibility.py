"""Every view of the web app, checked by axe-core (the rules of WCAG 2.1 A and AA) in
chromium, in the light and the dark colour scheme, wide and narrow."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from mailroom_local import Runtime
from tests.browser.test_admin_console import import_subscribers
from tests.integration.conftest import admin, http

pytestmark = pytest.mark.integration

AXE = Axe()
WCAG = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}


def violations(page: Page) -> list[str]:
    results = AXE.run(page, options=WCAG).response["violations"]
    return [
        f"{item['id']} ({item['impact']}): {item['help']} at {[node['target'] for node in item['nodes']][:5]}"
        for item in results
    ]


@pytest.fixture(scope="module")
def campaign_id(runtime: Runtime) -> str:
    import_subscribers(runtime, [(f"axe.{uuid.uuid4().hex[:6]}@example.org", "Axe")])
    campaign = admin(runtime, "POST", "/campaigns", {"subject": "Checked", "content": "# Hi {{ name }}"})
    admin(runtime, "POST", f"/campaigns/{campaign['id']}/send")
    return str(campaign["id"])


def _views(runtime: Runtime, campaign_id: str) -> list[tuple[str, str, Callable[[Page], None] | None]]:
    def signed_in(page: Page) -> None:
        page.evaluate("token => sessionStorage.setItem('mailroom.admin.token', token)", runtime.admin_token())

    def with_errors(page: Page) -> None:
        page.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_label("Email address")).to_have_attribute("aria-invalid", "true")

    return [
        ("/", "Subscribe to the newsletter", None),
        ("/", "Subscribe to the newsletter", with_errors),
        ("/check-inbox", "Check your inbox", None),
        ("/confirm?token=bad", "Invalid link", None),
        ("/no/such/page", "Page not found", None),
        ("/admin/sign-in", "Sign in to the admin console", None),
        ("/admin", "", signed_in),
        ("/admin/campaigns", "Campaigns", signed_in),
        ("/admin/campaigns/new", "New campaign", signed_in),
        (f"/admin/campaigns/{campaign_id}", "Checked", signed_in),
        ("/admin/subscribers", "Subscribers", signed_in),
        ("/admin/dead-letters", "Dead letters", signed_in),
    ]


def test_axe_finds_what_it_should(runtime: Runtime, page: Page) -> None:
    """The checker itself: a label taken away and a low-contrast text are found."""
    page.goto(f"{runtime.url}/")
    expect(page.get_by_label("Email address")).to_be_visible()
    assert violations(page) == []
    page.evaluate(
        """() => {
            document.querySelector('label[for]').remove();
            document.querySelector('.lead').style.color = '#ccc';
        }"""
    )
    found = " ".join(violations(page))
    assert "label" in found and "color-contrast" in found, found


@pytest.mark.parametrize(("scheme", "width"), [("light", 1280), ("dark", 360)])
def test_every_view_passes_axe_wcag_2_1_aa(
    runtime: Runtime, page: Page, campaign_id: str, scheme: str, width: int
) -> None:
    page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
    page.set_viewport_size({"width": width, "height": 900})
    found: dict[str, list[str]] = {}
    for path, heading, prepare in _views(runtime, campaign_id):
        if prepare is not None and prepare.__name__ == "signed_in":
            page.goto(f"{runtime.url}/admin/sign-in")
            prepare(page)
        page.goto(f"{runtime.url}{path}")
        if heading:
            expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        else:
            expect(page.get_by_role("heading", level=1)).to_be_visible()
        if prepare is not None and prepare.__name__ != "signed_in":
            prepare(page)
        page.wait_for_load_state("networkidle")
        problems = violations(page)
        if problems:
            found[path] = problems
    assert not found, found
    assert http("GET", f"{runtime.url}/_local/health").status == 200
