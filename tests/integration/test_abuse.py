"""Sign-up abuse on the embedded runtime (docs/abuse.md): rate limits per source IP and per
address, and the honeypot, over HTTP.

The local API gateway puts the TCP peer's address into ``requestContext.identity.sourceIp``,
as API Gateway does, and passes X-Forwarded-For on as an ordinary header. The tests speak
from several loopback addresses (127.0.0.0/8 is all this machine) to be several clients.
"""

from __future__ import annotations

import json
import time
import uuid
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlsplit

import pytest

from mailroom_local import Runtime
from tests.integration.conftest import Response, mails_to, queues_idle, wait_for

pytestmark = pytest.mark.integration


def address(label: str) -> str:
    return f"{label}.{uuid.uuid4().hex[:10]}@example.org"


def sign_up(
    runtime: Runtime, body: dict[str, Any], source_ip: str = "127.0.0.1", headers: dict[str, str] | None = None
) -> Response:
    """POST /api/subscriptions from ``source_ip`` (the socket is bound to it)."""
    parts = urlsplit(runtime.public_url)
    connection = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30, source_address=(source_ip, 0))
    try:
        connection.request(
            "POST",
            "/api/subscriptions",
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        answer = connection.getresponse()
        items = answer.getheaders()
        return Response(answer.status, {k.lower(): v for k, v in items}, answer.read(), items)
    finally:
        connection.close()


def limits(runtime: Runtime) -> tuple[int, int]:
    """(per address, per source IP) as the stack configures the registration function."""
    env = runtime.stack.function_env("RegistrationFunction")
    return int(env["SIGNUPS_PER_ADDRESS_PER_HOUR"]), int(env["SIGNUPS_PER_SOURCE_IP_PER_HOUR"])


def stored(runtime: Runtime, email: str) -> bool:
    table = runtime.stack.physical_name("SubscribersTable")
    found = runtime.client("dynamodb").get_item(TableName=table, Key={"email": {"S": email}}, ConsistentRead=True)
    return "Item" in found


def assert_rate_limited(answer: Response) -> None:
    assert answer.status == 429, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(answer.headers["retry-after"]) <= 3600  # the seconds to the hour's end


def test_the_sign_ups_of_one_address_are_limited_whatever_ip_they_come_from(runtime: Runtime) -> None:
    per_address, _ = limits(runtime)
    to = address("ada")
    for n in range(per_address):
        answer = sign_up(runtime, {"email": to}, source_ip=f"127.0.1.{n + 1}")
        assert answer.status == 202, answer.text
    assert_rate_limited(sign_up(runtime, {"email": to.upper()}, source_ip="127.0.1.99"))
    assert sign_up(runtime, {"email": address("other")}, source_ip="127.0.1.99").status == 202


def test_the_sign_ups_from_one_ip_are_limited_and_x_forwarded_for_changes_nothing(runtime: Runtime) -> None:
    _, per_ip = limits(runtime)
    for n in range(per_ip):
        forged = {"X-Forwarded-For": f"198.51.100.{n}"}  # a header the client wrote: not trusted
        answer = sign_up(runtime, {"email": address(f"r{n}")}, source_ip="127.0.2.1", headers=forged)
        assert answer.status == 202, (n, answer.text)
    assert_rate_limited(
        sign_up(runtime, {"email": address("late")}, source_ip="127.0.2.1", headers={"X-Forwarded-For": "192.0.2.1"})
    )
    # another client is not affected
    assert sign_up(runtime, {"email": address("neighbour")}, source_ip="127.0.2.2").status == 202


def test_a_filled_honeypot_gets_the_same_answer_and_nothing_is_stored_or_mailed(runtime: Runtime) -> None:
    person, bot = address("person"), address("bot")
    human = sign_up(runtime, {"email": person, "name": "Ann"}, source_ip="127.0.3.1")
    trapped = sign_up(runtime, {"email": bot, "name": "Ann", "website": "https://spam.example"}, source_ip="127.0.3.2")
    assert (trapped.status, trapped.body) == (human.status, human.body)
    assert human.status == 202
    assert wait_for(lambda: mails_to(runtime, person), timeout=5.0), "no confirmation mail to the person"
    assert wait_for(lambda: queues_idle(runtime, "WelcomeQueue"), timeout=5.0)
    time.sleep(0.5)
    assert mails_to(runtime, bot) == []
    assert stored(runtime, person) and not stored(runtime, bot)


def test_the_rate_table_holds_no_address_in_clear(runtime: Runtime) -> None:
    to = address("private")
    assert sign_up(runtime, {"email": to}, source_ip="127.0.4.1").status == 202
    table = runtime.stack.physical_name("RateLimitsTable")
    items = runtime.client("dynamodb").scan(TableName=table)["Items"]
    keys = [item["key"]["S"] for item in items]
    assert any(key.startswith("signup#ip#127.0.4.1#") for key in keys), keys
    assert all("@" not in json.dumps(item) and "example" not in json.dumps(item) for item in items), items
    assert all(int(item["expires_at"]["N"]) > time.time() for item in items)  # the TTL is set
