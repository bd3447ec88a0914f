"""Integration tests: the embedded runtime, started in this process, exercised over HTTP.

moto's state is process-global, so one runtime runs at a time: every runtime fixture is
module-scoped and modules run one after the other.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailroom_local import Runtime
from tests.support import TEMPLATE

T = TypeVar("T")

# No proxies: everything here is on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    header_list: list[tuple[str, str]]

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def http(
    method: str,
    url: str,
    body: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """One HTTP request with urllib; 4xx/5xx are returned, not raised."""
    headers = dict(headers or {})
    data: bytes | None
    if isinstance(body, dict):
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            items = list(answer.headers.items())
            return Response(answer.status, {k.lower(): v for k, v in items}, answer.read(), items)
    except urllib.error.HTTPError as error:
        with error:
            items = list(error.headers.items())
            return Response(error.code, {k.lower(): v for k, v in items}, error.read(), items)


def wait_for(probe: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T | None:
    """Call ``probe`` until it returns something truthy or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def outbox(runtime: Runtime) -> list[dict[str, Any]]:
    mails: list[dict[str, Any]] = http("GET", f"{runtime.url}/_local/outbox").json()
    return mails


def mails_to(runtime: Runtime, address: str, kind: str | None = None) -> list[dict[str, Any]]:
    """Mails to ``address``; ``kind`` "welcome" or "newsletter" filters by subject."""
    found = [m for m in outbox(runtime) if address in m["to"]]
    if kind is not None:
        found = [m for m in found if kind in m["subject"].lower()]
    return found


CONFIRM_LINK = re.compile(r"https?://\S+/confirm\?token=[\w.-]+")
# The web app's pages (what mails link to) and the API routes they call with the same token.
PAGE_TO_API = {"/confirm": "/subscriptions/confirm", "/unsubscribe": "/unsubscribe"}


def api_link(runtime: Runtime, page_link: str) -> str:
    """The API URL that the web app's page at ``page_link`` calls (its token unchanged)."""
    page, _, query = page_link.removeprefix(runtime.public_url).partition("?")
    assert page in PAGE_TO_API and query.startswith("token="), page_link
    return f"{runtime.api_url}{PAGE_TO_API[page]}?{query}"


def confirmation_link(runtime: Runtime, address: str, timeout: float = 5.0) -> str:
    """The link in the (last) confirmation mail to ``address`` (the web app's confirmation
    page), once it has arrived."""
    mails = wait_for(lambda: mails_to(runtime, address, "confirm"), timeout=timeout)
    assert mails, f"no confirmation mail to {address} within {timeout} s"
    found = CONFIRM_LINK.search(mails[-1]["text"] or "")
    assert found, mails[-1]["text"]
    return found.group(0)


def subscribe(runtime: Runtime, address: str, name: str | None = None) -> None:
    """Sign up through the API, open the confirmation link from the mail, await the welcome mail."""
    body = {"email": address} | ({"name": name} if name else {})
    assert http("POST", f"{runtime.api_url}/subscriptions", body).status == 202
    link = api_link(runtime, confirmation_link(runtime, address))
    confirmed = http("GET", link, headers={"Accept": "application/json"})
    assert confirmed.status == 200 and confirmed.json()["status"] == "confirmed", confirmed.text
    assert wait_for(lambda: mails_to(runtime, address, "welcome"), timeout=5.0), f"no welcome mail to {address}"


def admin_headers(runtime: Runtime) -> dict[str, str]:
    """``Authorization`` with the local first admin's Cognito ID token (what the console sends)."""
    return runtime.admin_headers()


def admin_http(
    runtime: Runtime,
    method: str,
    url: str,
    body: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """:func:`http` as the signed-in admin."""
    return http(method, url, body, {**admin_headers(runtime), **(headers or {})})


def admin(runtime: Runtime, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """A successful call of the admin API (``path`` below ``/admin``) as the admin, its JSON."""
    answer = admin_http(runtime, method, f"{runtime.api_url}/admin{path}", body)
    assert answer.status < 300, (answer.status, answer.text)
    return answer.json()


def send_campaign(runtime: Runtime, subject: str, content: str = "Hello {{ name }}") -> dict[str, Any]:
    """Create a campaign, send it now, and return it once it is sent and its queues are idle."""
    campaign_id = admin(runtime, "POST", "/campaigns", {"subject": subject, "content": content})["id"]
    admin(runtime, "POST", f"/campaigns/{campaign_id}/send")

    def finished() -> dict[str, Any] | None:
        campaign: dict[str, Any] = admin(runtime, "GET", f"/campaigns/{campaign_id}")
        return campaign if campaign["status"] == "sent" else None

    campaign = wait_for(finished, timeout=30.0)
    assert campaign, "the campaign did not finish"
    assert wait_for(lambda: queues_idle(runtime, "NewsletterQueue", "FanoutQueue"), timeout=10.0)
    return campaign


def record_statuses(runtime: Runtime, pk: str) -> Counter[str]:
    """How many result records under ``pk`` ("welcome", "campaign#<id>") have each status."""
    statuses: Counter[str] = Counter()
    paginator = runtime.client("dynamodb").get_paginator("query")
    for page in paginator.paginate(
        TableName=runtime.stack.physical_name("ResultsTable"),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
    ):
        statuses.update(item["status"]["S"] for item in page["Items"])
    return statuses


def queues_idle(runtime: Runtime, *names: str) -> bool:
    status = {q["name"]: q for q in http("GET", f"{runtime.url}/_local/queues").json()}
    return all(
        status[name]["ApproximateNumberOfMessages"] == 0 and status[name]["ApproximateNumberOfMessagesNotVisible"] == 0
        for name in names
    )


def start_runtime(template: Path, overrides: dict[str, str] | None = None) -> Runtime:
    return Runtime(template, port=0, overrides=overrides).start()


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    """The application from template.yaml, on a free port, for one test module."""
    started = start_runtime(TEMPLATE)
    try:
        yield started
    finally:
        started.stop()
