"""Sign-up abuse: rate limits per source IP and per address, and the honeypot (docs/abuse.md).

The registration function with its sample event under moto; the clock of the counters is
injected, so windows start and end when a test says.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from mailroom.adapters.ratelimit import (
    EXPIRY_MARGIN_SECONDS,
    FixedWindowCounter,
    Hit,
    Kind,
    RateLimited,
    RateLimitUnavailable,
    SignupLimits,
    address_subject,
    source_subject,
)
from mailroom_local.template import Stack
from tests.conftest import LambdaContext
from tests.support import REGION, load_event, put_subscriber, queue_messages

Loader = Callable[..., ModuleType]

HOUR = 1_795_860_000 - 1_795_860_000 % 3600  # 2026-11-28 10:00:00 UTC, a window's start
PER_ADDRESS = 3
PER_IP = 20


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rate_table(stack: Stack) -> str:
    """The template's RateLimitsTable (key ``key`` (S), TTL ``expires_at``)."""
    return stack.physical_name("RateLimitsTable")


@pytest.fixture
def clock() -> Clock:
    return Clock(HOUR + 1000.0)


@pytest.fixture
def app(stack: Stack, load_function: Loader, rate_table: str, clock: Clock) -> Iterator[ModuleType]:
    env = stack.function_env("RegistrationFunction")
    assert env["RATE_LIMITS_TABLE"] == rate_table
    # the template's defaults, which these tests count to
    assert (env["SIGNUPS_PER_ADDRESS_PER_HOUR"], env["SIGNUPS_PER_SOURCE_IP_PER_HOUR"]) == (
        str(PER_ADDRESS),
        str(PER_IP),
    )
    loaded = load_function("RegistrationFunction")
    loaded.signup_limits.counter.clock = clock
    yield loaded


def sign_up(
    app: ModuleType,
    context: LambdaContext,
    email: str,
    source_ip: str = "203.0.113.10",
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    event = load_event("registration_post.json")
    event["body"] = json.dumps({"email": email, **fields})
    event["requestContext"]["identity"]["sourceIp"] = source_ip
    event["headers"] |= headers or {}
    response: dict[str, Any] = app.lambda_handler(event, context)
    return response


def header(response: dict[str, Any], name: str) -> str | None:
    """A header of a proxy answer (API Gateway merges headers and multiValueHeaders)."""
    single = {key.lower(): value for key, value in (response.get("headers") or {}).items()}
    multi = {key.lower(): values[-1] for key, values in (response.get("multiValueHeaders") or {}).items()}
    value = {**single, **multi}.get(name.lower())
    return None if value is None else str(value)


def subscriber_count(stack: Stack) -> int:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    return int(dynamodb.scan(TableName=stack.physical_name("SubscribersTable"), Select="COUNT")["Count"])


def rate_items(table: str) -> list[dict[str, Any]]:
    items = boto3.client("dynamodb", region_name=REGION).scan(TableName=table)["Items"]
    return [{key: next(iter(value.values())) for key, value in item.items()} for item in items]


def log_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    """Every record logged, with its extra keys (before the formatter masks anything)."""
    return [
        {key: str(value) for key, value in vars(record).items()} | {"message": record.getMessage()}
        for record in caplog.records
    ]


def emf_metrics(out: str) -> list[tuple[str, dict[str, Any]]]:
    """(metric name, the blob's dimensions and values) of every EMF blob printed."""
    found = []
    for line in out.splitlines():
        if line.startswith('{"_aws"'):
            blob = json.loads(line)
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                found += [(metric["Name"], blob) for metric in directive["Metrics"]]
    return found


# --------------------------------------------------------------------------- per address


def test_the_fourth_sign_up_of_an_address_within_the_hour_is_429_with_retry_after(
    app: ModuleType, context: LambdaContext, stack: Stack
) -> None:
    # from four different IPs: the address's budget does not depend on where it comes from
    answers = [sign_up(app, context, "ada@example.com", source_ip=f"198.51.100.{n}") for n in range(1, 5)]
    assert [a["statusCode"] for a in answers] == [202, 202, 202, 429]
    limited = answers[-1]
    assert json.loads(limited["body"]) == {
        "error": {"code": "rate_limited", "message": "Too many sign-ups. Please try again in 43 minutes."}
    }
    assert header(limited, "Retry-After") == str(3600 - 1000)  # to the end of the hour
    assert header(limited, "Content-Type") == "application/json"
    assert header(limited, "Cache-Control") == "no-store"
    # another case of the same address is the same address
    assert sign_up(app, context, "ADA@Example.COM", source_ip="198.51.100.9")["statusCode"] == 429
    assert subscriber_count(stack) == 1


def test_a_rate_limited_answer_is_the_same_for_every_address_state(
    app: ModuleType, context: LambdaContext, stack: Stack
) -> None:
    put_subscriber(stack, "s-known", "grace@example.com")  # subscribed
    answers = {}
    for address in ("grace@example.com", "nobody@example.com"):
        for n in range(PER_ADDRESS):
            assert sign_up(app, context, address, source_ip=f"198.51.100.{n}")["statusCode"] == 202
        answers[address] = sign_up(app, context, address, source_ip="198.51.100.99")
    known, unknown = answers.values()
    assert (known["statusCode"], known["body"], header(known, "Retry-After")) == (
        unknown["statusCode"],
        unknown["body"],
        header(unknown, "Retry-After"),
    )
    assert known["statusCode"] == 429


# --------------------------------------------------------------------------- per source IP


def test_the_21st_sign_up_from_one_ip_within_the_hour_is_429(
    app: ModuleType, context: LambdaContext, stack: Stack, clock: Clock
) -> None:
    clock.now = HOUR + 3599.2
    for n in range(PER_IP):
        assert sign_up(app, context, f"reader{n}@example.com")["statusCode"] == 202, n
    limited = sign_up(app, context, "reader20@example.com")
    assert limited["statusCode"] == 429
    assert json.loads(limited["body"])["error"] == {
        "code": "rate_limited",
        "message": "Too many sign-ups. Please try again in 1 minute.",
    }
    assert header(limited, "Retry-After") == "1"  # at least a second, never 0
    assert subscriber_count(stack) == PER_IP
    assert len(queue_messages(stack, "WelcomeQueue")) == PER_IP


def test_x_forwarded_for_is_not_trusted(app: ModuleType, context: LambdaContext) -> None:
    """API Gateway's sourceIp is the client's; a header is whatever the client wrote."""
    for n in range(PER_IP):
        forged = {"X-Forwarded-For": f"192.0.2.{n}"}
        assert sign_up(app, context, f"r{n}@example.com", headers=forged)["statusCode"] == 202
    forged = {"X-Forwarded-For": "192.0.2.200"}
    assert sign_up(app, context, "r20@example.com", headers=forged)["statusCode"] == 429


def test_ips_and_addresses_are_counted_independently(app: ModuleType, context: LambdaContext) -> None:
    for n in range(PER_IP):
        assert sign_up(app, context, f"a{n}@example.com", source_ip="198.51.100.1")["statusCode"] == 202
    assert sign_up(app, context, "b0@example.com", source_ip="198.51.100.1")["statusCode"] == 429
    # another IP has its whole budget, and an address refused for its IP lost nothing
    for _ in range(PER_ADDRESS):
        assert sign_up(app, context, "b0@example.com", source_ip="198.51.100.2")["statusCode"] == 202
    assert sign_up(app, context, "b0@example.com", source_ip="198.51.100.2")["statusCode"] == 429
    # the address's limit says nothing about the IP's or another address's
    assert sign_up(app, context, "b1@example.com", source_ip="198.51.100.2")["statusCode"] == 202


def test_a_flood_from_one_ip_does_not_lock_the_victims_address_out(app: ModuleType, context: LambdaContext) -> None:
    """The IP is checked first: once the flooding IP is over its budget, its requests for
    the victim's address no longer count on the address."""
    for n in range(PER_IP):
        assert sign_up(app, context, f"filler{n}@example.com", source_ip="203.0.113.66")["statusCode"] == 202
    for _ in range(50):
        assert sign_up(app, context, "victim@example.com", source_ip="203.0.113.66")["statusCode"] == 429
    for _ in range(PER_ADDRESS):  # the victim, from home
        assert sign_up(app, context, "victim@example.com", source_ip="198.51.100.7")["statusCode"] == 202


def test_the_addresses_of_one_ipv6_network_share_a_budget(app: ModuleType, context: LambdaContext) -> None:
    for n in range(PER_IP):
        assert sign_up(app, context, f"v{n}@example.com", source_ip=f"2001:db8:1:2::{n + 1:x}")["statusCode"] == 202
    assert sign_up(app, context, "v20@example.com", source_ip="2001:db8:1:2:ffff::1")["statusCode"] == 429
    assert sign_up(app, context, "v20@example.com", source_ip="2001:db8:1:3::1")["statusCode"] == 202


# --------------------------------------------------------------------------- windows


def test_the_window_resets_at_the_hour(app: ModuleType, context: LambdaContext, clock: Clock, stack: Stack) -> None:
    for n in range(PER_ADDRESS):
        assert sign_up(app, context, "ada@example.com", source_ip=f"198.51.100.{n}")["statusCode"] == 202
    clock.now = HOUR + 3599.0
    assert sign_up(app, context, "ada@example.com", source_ip="198.51.100.50")["statusCode"] == 429
    clock.now = HOUR + 3600.0  # the next hour: a new window
    assert sign_up(app, context, "ada@example.com", source_ip="198.51.100.51")["statusCode"] == 202


def test_windows_are_items_of_their_own_that_expire_after_the_window(
    app: ModuleType, context: LambdaContext, clock: Clock, rate_table: str
) -> None:
    sign_up(app, context, "ada@example.com")
    clock.now = HOUR + 3600 + 5
    sign_up(app, context, "ada@example.com")
    items = sorted(rate_items(rate_table), key=lambda item: (item["key"].split("#")[1], item["key"]))
    assert [(item["key"], item["hits"], item["expires_at"]) for item in items] == [
        (f"signup#address#{address_subject('ada@example.com')}#{HOUR}", "1", str(HOUR + 3600 + EXPIRY_MARGIN_SECONDS)),
        (
            f"signup#address#{address_subject('ada@example.com')}#{HOUR + 3600}",
            "1",
            str(HOUR + 7200 + EXPIRY_MARGIN_SECONDS),
        ),
        (f"signup#ip#203.0.113.10#{HOUR}", "1", str(HOUR + 3600 + EXPIRY_MARGIN_SECONDS)),
        (f"signup#ip#203.0.113.10#{HOUR + 3600}", "1", str(HOUR + 7200 + EXPIRY_MARGIN_SECONDS)),
    ]


def test_the_rate_table_holds_no_address_in_clear(app: ModuleType, context: LambdaContext, rate_table: str) -> None:
    addresses = ["ada@example.com", "Grace.Hopper@Example.org", "bücher@xn--bcher-kva.de"]
    for address in addresses:
        for _ in range(PER_ADDRESS + 1):
            sign_up(app, context, address, name="Ada")
    text = json.dumps(rate_items(rate_table))
    assert "@" not in text and "example" not in text.lower() and "ada" not in text.lower()
    assert "grace" not in text.lower() and "bcher" not in text.lower()
    assert address_subject("ada@example.com") in text


def test_a_counter_stays_at_its_limit_and_a_known_over_key_costs_no_request(rate_table: str) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb.UpdateItem", lambda **_: calls.append("update"))
    counter = FixedWindowCounter(rate_table, client=client, clock=Clock(HOUR + 10.0))
    assert isinstance(counter.hit("k", 2), Hit)
    assert isinstance(counter.hit("k", 2), Hit)
    assert counter.hit("k", 2) == 3590
    assert len(calls) == 3
    assert counter.hit("k", 2) == 3590  # remembered: no request
    assert len(calls) == 3
    assert [item["hits"] for item in rate_items(rate_table)] == ["2"]


# --------------------------------------------------------------------------- failures


class FailingClient:
    """A DynamoDB client whose UpdateItem fails (throttled after the SDK's retries, or lost)."""

    def __init__(self, error: Exception) -> None:
        self.exceptions = boto3.client("dynamodb", region_name=REGION).exceptions
        self.error = error
        self.calls = 0

    def update_item(self, **request: Any) -> None:
        self.calls += 1
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "UpdateItem"),
        ClientError({"Error": {"Code": "InternalServerError", "Message": "oops"}}, "UpdateItem"),
        ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
    ],
    ids=["throttled", "5xx", "lost-answer"],
)
def test_a_failing_rate_table_is_a_503_with_retry_after_and_nothing_is_done(
    app: ModuleType, context: LambdaContext, stack: Stack, error: Exception
) -> None:
    app.signup_limits.counter.client = FailingClient(error)
    response = sign_up(app, context, "ada@example.com")
    assert response["statusCode"] == 503
    assert json.loads(response["body"])["error"]["code"] == "unavailable"
    assert header(response, "Retry-After") == "5"
    assert subscriber_count(stack) == 0
    assert queue_messages(stack, "WelcomeQueue") == []


def test_a_sign_up_that_fails_on_our_side_costs_no_budget(
    app: ModuleType, context: LambdaContext, stack: Stack
) -> None:
    refused = ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessage")
    original = app.lifecycle.welcome_queue.client.send_message
    app.lifecycle.welcome_queue.client.send_message = lambda **_: (_ for _ in ()).throw(refused)
    for _ in range(PER_ADDRESS + 2):
        assert sign_up(app, context, "ada@example.com")["statusCode"] == 503
    app.lifecycle.welcome_queue.client.send_message = original
    assert sign_up(app, context, "ada@example.com")["statusCode"] == 202
    assert len(queue_messages(stack, "WelcomeQueue")) == 1


def test_an_address_check_that_fails_takes_the_ips_hit_back(rate_table: str) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    counter = FixedWindowCounter(rate_table, client=client, clock=Clock(HOUR))
    limits = SignupLimits(counter, per_address=3, per_source_ip=1)
    real_update = client.update_item

    def fail_on_address(**request: Any) -> Any:
        if request["Key"]["key"]["S"].startswith("signup#address#") and "ADD hits :one" in request["UpdateExpression"]:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "UpdateItem")
        return real_update(**request)

    client.update_item = fail_on_address  # type: ignore[method-assign]
    with pytest.raises(RateLimitUnavailable):
        limits.charge("198.51.100.1", "ada@example.com")
    client.update_item = real_update  # type: ignore[method-assign]
    limits.charge("198.51.100.1", "ada@example.com")  # the IP's one sign-up is still there
    with pytest.raises(RateLimited) as raised:
        limits.charge("198.51.100.1", "grace@example.com")
    assert raised.value.kind is Kind.IP


# --------------------------------------------------------------------------- honeypot


def test_a_filled_honeypot_gets_the_same_202_and_nothing_is_stored_or_queued(
    app: ModuleType,
    context: LambdaContext,
    stack: Stack,
    rate_table: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    human = sign_up(app, context, "human@example.com", name="Ann", website="")
    capsys.readouterr()
    caplog.clear()
    bot = sign_up(app, context, "bot.target@example.com", name="Ann", website="https://spam.example")
    out = capsys.readouterr().out
    logs = log_lines(caplog)
    assert (bot["statusCode"], bot["body"]) == (human["statusCode"], human["body"]) == (202, human["body"])
    assert {k.lower(): v for k, v in (bot.get("multiValueHeaders") or {}).items()} == {
        k.lower(): v for k, v in (human.get("multiValueHeaders") or {}).items()
    }
    assert subscriber_count(stack) == 1  # the human only
    assert [task["email"] for task in queue_messages(stack, "WelcomeQueue")] == ["human@example.com"]
    assert "bot.target" not in json.dumps(rate_items(rate_table))  # not even counted
    assert len(rate_items(rate_table)) == 2  # the human's IP and address
    names = [name for name, _ in emf_metrics(out)]
    assert "HoneypotHits" in names and "Registrations" not in names
    assert [line["message"] for line in logs] == ["honeypot filled: nothing done"]
    assert "bot.target" not in json.dumps(logs) + out


def test_a_honeypot_of_blanks_is_a_person(app: ModuleType, context: LambdaContext, stack: Stack) -> None:
    assert sign_up(app, context, "ann@example.com", website="  ")["statusCode"] == 202
    assert subscriber_count(stack) == 1


# --------------------------------------------------------------------------- metrics and logs


def test_rate_limited_is_a_metric_with_its_kind_and_the_logs_name_no_address(
    app: ModuleType, context: LambdaContext, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(PER_ADDRESS + 1):
        sign_up(app, context, "ada@example.com", source_ip=f"198.51.100.{n}")
    for n in range(PER_IP + 1):
        sign_up(app, context, f"r{n}@example.com", source_ip="198.51.100.200")
    out = capsys.readouterr().out
    kinds = [blob["kind"] for name, blob in emf_metrics(out) if name == "RateLimited"]
    assert sorted(kinds) == ["address", "ip"]
    logs = log_lines(caplog)
    assert [line["kind"] for line in logs if line["message"] == "sign-up rate limited"] == ["address", "ip"]
    assert "ada@" not in json.dumps(logs) + out and "198.51.100.200" not in json.dumps(logs) + out


# --------------------------------------------------------------------------- subjects


@pytest.mark.parametrize(
    ("source_ip", "subject"),
    [
        ("203.0.113.10", "203.0.113.10"),
        (" 203.0.113.10 ", "203.0.113.10"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.10", "203.0.113.10"),
        ("", "unknown"),
        (None, "unknown"),
        ("203.0.113.10, 10.0.0.1", "unknown"),
        ("not an ip", "unknown"),
    ],
)
def test_source_subjects(source_ip: str | None, subject: str) -> None:
    assert source_subject(source_ip) == subject


def test_address_subjects_are_domain_separated_hashes() -> None:
    import hashlib

    subject = address_subject("ada@example.com")
    assert len(subject) == 64 and subject != hashlib.sha256(b"ada@example.com").hexdigest()
    assert subject == address_subject("ada@example.com") != address_subject("ada@example.org")
