"""mailroom.adapters.aws: one client per service and config in a process, shared by the adapters."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from mailroom.adapters import aws
from mailroom.adapters.campaigns import CampaignRepository
from mailroom.adapters.dynamodb import SubscriberRepository


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    aws.clear_clients()
    yield
    aws.clear_clients()


def test_adapters_share_one_client_per_service_and_config() -> None:
    assert SubscriberRepository("s").client is CampaignRepository("c").client is aws.dynamodb_client()
    assert aws.sqs_client() is aws.sqs_client()
    assert aws.sqs_client() is not aws.dynamodb_client()
    # sending has its own config (one attempt, never a retry behind our back): its own client
    assert aws.sesv2_client() is not aws.sesv2_read_client()
    assert aws.sesv2_client().meta.config.retries["total_max_attempts"] == 1


def test_a_changed_environment_gets_a_new_client(monkeypatch: pytest.MonkeyPatch) -> None:
    first = aws.dynamodb_client()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    local = aws.dynamodb_client()
    assert local is not first
    assert local.meta.endpoint_url == "http://127.0.0.1:9"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert aws.dynamodb_client().meta.region_name == "eu-west-1"
    assert aws.dynamodb_client() is aws.dynamodb_client()  # the same environment: the same client


def test_a_new_default_session_or_clear_clients_gives_new_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    first = aws.dynamodb_client()
    aws.clear_clients()
    second = aws.dynamodb_client()
    assert second is not first
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    assert aws.dynamodb_client() is not second


class Hooked(Exception):
    pass


def test_a_hook_installed_after_clear_clients_reaches_the_adapters_clients() -> None:
    """What the chaos tests' fault injector relies on: its hooks reach the clients made after it."""
    before = aws.dynamodb_client()  # made before the hook: it never sees it

    def hook(**_: object) -> None:
        raise Hooked

    boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    session.events.register("before-call.dynamodb.GetItem", hook, unique_id="t-hook")
    try:
        aws.clear_clients()
        with pytest.raises(Hooked):
            SubscriberRepository("s").client.get_item(TableName="t", Key={"pk": {"S": "x"}})
        assert before.meta.events is not aws.dynamodb_client().meta.events
    finally:
        session.events.unregister("before-call.dynamodb.GetItem", unique_id="t-hook")
