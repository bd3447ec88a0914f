"""SES v2 GetAccount, which moto lacks and mailroom_local.moto_ext adds: under mock_aws()
and through moto's server (the one the runtime starts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mailroom_local import aws
from mailroom_local.moto_ext import (
    DEFAULT_MAX_SEND_RATE,
    MAX_SEND_RATE_ENV,
    install,
    reported_max_send_rate,
    resolve_max_send_rate,
)
from tests.support import REGION

SENDER = "news@example.com"


def send(sesv2: Any, count: int) -> None:
    for number in range(count):
        sesv2.send_email(
            FromEmailAddress=SENDER,
            Destination={"ToAddresses": [f"reader{number}@example.com"]},
            Content={"Simple": {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi"}}}},
        )


@pytest.fixture(autouse=True)
def _no_rate_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No rate from the environment; the rate tests/conftest.py installed is restored after."""
    monkeypatch.delenv(MAX_SEND_RATE_ENV, raising=False)
    previous = reported_max_send_rate()
    yield
    install(previous)


def test_get_account_under_mock_aws_reports_the_rate_and_the_sent_mails() -> None:
    assert install(12.5) == 12.5
    with mock_aws():
        sesv2 = boto3.client("sesv2", region_name=REGION)
        sesv2.create_email_identity(EmailIdentity=SENDER)
        send(sesv2, 3)
        account = sesv2.get_account()
    account.pop("ResponseMetadata")
    assert account == {
        "DedicatedIpAutoWarmupEnabled": False,
        "EnforcementStatus": "HEALTHY",
        "ProductionAccessEnabled": True,
        "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 12.5, "SentLast24Hours": 3.0},
        "SendingEnabled": True,
    }


def test_sent_mails_are_counted_per_region() -> None:
    install()
    with mock_aws():
        here = boto3.client("sesv2", region_name=REGION)
        here.create_email_identity(EmailIdentity=SENDER)
        send(here, 2)
        elsewhere = boto3.client("sesv2", region_name="eu-west-1")
        assert elsewhere.get_account()["SendQuota"]["SentLast24Hours"] == 0.0
        assert here.get_account()["SendQuota"]["SentLast24Hours"] == 2.0


def test_get_account_through_the_moto_server() -> None:
    install(3)
    server = aws.MotoServer()
    url = server.start()
    try:
        sesv2 = aws.client("sesv2", url, REGION)
        sesv2.create_email_identity(EmailIdentity=SENDER)
        send(sesv2, 1)
        quota = sesv2.get_account()["SendQuota"]
    finally:
        server.stop()
    assert quota == {"Max24HourSend": 50000.0, "MaxSendRate": 3.0, "SentLast24Hours": 1.0}


def test_installing_again_changes_only_the_rate() -> None:
    from moto.sesv2.responses import SESV2Response

    install(5)
    method = SESV2Response.get_account  # type: ignore[attr-defined]
    install(7)
    assert SESV2Response.get_account is method  # type: ignore[attr-defined]
    with mock_aws():
        assert boto3.client("sesv2", region_name=REGION).get_account()["SendQuota"]["MaxSendRate"] == 7.0


def test_the_rate_comes_from_the_argument_then_the_environment_then_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resolve_max_send_rate() == DEFAULT_MAX_SEND_RATE == 100.0
    monkeypatch.setenv(MAX_SEND_RATE_ENV, " 14 ")
    assert resolve_max_send_rate() == 14.0
    assert resolve_max_send_rate(2.5) == 2.5
    assert install() == 14.0
    with mock_aws():
        assert boto3.client("sesv2", region_name=REGION).get_account()["SendQuota"]["MaxSendRate"] == 14.0


@pytest.mark.parametrize("value", ["fast", "0", "-1", "nan", "inf"])
def test_an_invalid_rate_in_the_environment_is_an_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(MAX_SEND_RATE_ENV, value)
    with pytest.raises(ValueError, match=MAX_SEND_RATE_ENV):
        resolve_max_send_rate()


@pytest.mark.parametrize("value", [0.0, -3.0, float("nan"), float("inf")])
def test_an_invalid_rate_argument_is_an_error(value: float) -> None:
    with pytest.raises(ValueError, match="above 0"):
        install(value)


def test_the_command_line_takes_the_rate(capsys: pytest.CaptureFixture[str]) -> None:
    from mailroom_local.__main__ import build_parser

    parser = build_parser()
    assert parser.parse_args(["--ses-max-send-rate", "25"]).ses_max_send_rate == 25.0
    assert parser.parse_args([]).ses_max_send_rate is None  # then the environment, then 100
    with pytest.raises(SystemExit):
        parser.parse_args(["--ses-max-send-rate", "0"])
    assert "a send rate is a number of mails per second above 0" in capsys.readouterr().err
    assert MAX_SEND_RATE_ENV in " ".join(parser.format_help().split())


def test_the_reported_rate_is_the_last_installed_one() -> None:
    install(9)
    assert reported_max_send_rate() == 9.0
