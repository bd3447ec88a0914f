"""Registration and newsletter logic against the real adapters on moto (tables from template.yaml)."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError

from mailroom.adapters.dynamodb import SubscriberRepository
from mailroom.adapters.sqs import TaskQueue
from mailroom.logic.newsletter import edition_for, fan_out
from mailroom.logic.registration import register
from mailroom.models import Registration, ScheduleInvocation, Subscriber, SubscriberStatus
from mailroom_local.template import Stack
from tests.support import REGION, queue_messages


@pytest.fixture
def subscribers(stack: Stack) -> SubscriberRepository:
    return SubscriberRepository(
        stack.physical_name("SubscribersTable"), client=boto3.client("dynamodb", region_name=REGION)
    )


@pytest.fixture
def welcome_queue(stack: Stack) -> TaskQueue:
    return TaskQueue(stack.queue_url("WelcomeQueue"), client=boto3.client("sqs", region_name=REGION))


def test_a_registration_that_died_before_queueing_is_completed_by_the_next_one(
    stack: Stack, subscribers: SubscriberRepository, welcome_queue: TaskQueue
) -> None:
    # Given a subscriber stored by a registration that died before its welcome task was queued
    subscribers.create(Subscriber(id="s-1", email="ada@example.com", created_at="2026-11-28T10:00:00.000Z"))
    # When the address registers again
    result = register(Registration(email="ada@example.com"), subscribers, welcome_queue)
    # Then the same subscriber is kept and its welcome task is queued now, once
    assert (result.subscriber_id, result.created) == ("s-1", False)
    assert [task["subscriber_id"] for task in queue_messages(stack, "WelcomeQueue")] == ["s-1"]
    stored = subscribers.get("ada@example.com")
    assert stored is not None and stored.welcome_queued
    register(Registration(email="ada@example.com"), subscribers, welcome_queue)
    assert queue_messages(stack, "WelcomeQueue") == []


def test_a_refused_welcome_task_leaves_no_subscriber(
    stack: Stack, subscribers: SubscriberRepository, welcome_queue: TaskQueue
) -> None:
    refused = ClientError({"Error": {"Code": "InternalError", "Message": "no"}}, "SendMessage")
    with mock.patch.object(welcome_queue.client, "send_message", side_effect=refused), pytest.raises(ClientError):
        register(Registration(email="ada@example.com"), subscribers, welcome_queue)
    assert subscribers.get("ada@example.com") is None


def test_fan_out_pages_through_every_subscribed_subscriber_once(
    stack: Stack, subscribers: SubscriberRepository
) -> None:
    for index in range(37):
        status = SubscriberStatus.UNSUBSCRIBED if index % 10 == 0 else SubscriberStatus.SUBSCRIBED
        subscribers.create(
            Subscriber(id=f"s-{index:02}", email=f"r{index}@example.com", status=status, created_at="2026-11-28")
        )
    queue = TaskQueue(stack.queue_url("NewsletterQueue"), client=boto3.client("sqs", region_name=REGION))
    result = fan_out("newsletter-2026-11-28", subscribers, queue, recipients_per_task=3, page_size=4)
    tasks = queue_messages(stack, "NewsletterQueue")
    ids = [recipient["id"] for task in tasks for recipient in task["recipients"]]
    expected = sorted(f"s-{index:02}" for index in range(37) if index % 10)
    assert sorted(ids) == expected  # every eligible subscriber, none twice, no unsubscribed one
    assert (result.recipients, result.tasks) == (33, 11)
    assert all(1 <= len(task["recipients"]) <= 3 for task in tasks)
    assert result.batch_calls == 2  # 11 tasks: one batch of 10, one of 1


def test_fan_out_with_no_subscribers_queues_nothing(stack: Stack, subscribers: SubscriberRepository) -> None:
    queue = TaskQueue(stack.queue_url("NewsletterQueue"), client=boto3.client("sqs", region_name=REGION))
    assert fan_out("newsletter-2026-11-28", subscribers, queue, recipients_per_task=50).tasks == 0
    assert queue_messages(stack, "NewsletterQueue") == []


@pytest.mark.parametrize(
    ("scheduled", "timezone", "edition"),
    [
        ("2026-11-28T10:00:00Z", "UTC", "newsletter-2026-11-28"),
        ("2026-11-28T23:30:00Z", "Europe/Berlin", "newsletter-2026-11-29"),
        ("2026-11-28T03:00:00Z", "America/Los_Angeles", "newsletter-2026-11-27"),
    ],
)
def test_the_edition_is_the_scheduled_day_in_the_schedule_time_zone(
    scheduled: str, timezone: str, edition: str
) -> None:
    invocation = ScheduleInvocation.model_validate({"scheduledTime": scheduled})
    assert edition_for(invocation, timezone) == edition


def test_without_a_scheduled_time_the_edition_is_today() -> None:
    fixed = datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert edition_for(ScheduleInvocation(), "UTC", now=lambda: fixed) == "newsletter-2026-11-28"


def test_a_registration_whose_mark_fails_still_succeeds(
    stack: Stack, subscribers: SubscriberRepository, welcome_queue: TaskQueue
) -> None:
    broken = ClientError({"Error": {"Code": "InternalServerError", "Message": "no"}}, "UpdateItem")
    with mock.patch.object(subscribers.client, "update_item", side_effect=broken):
        result = register(Registration(email="ada@example.com"), subscribers, welcome_queue)
    assert result.created
    assert len(queue_messages(stack, "WelcomeQueue")) == 1
    assert subscribers.get("ada@example.com") is not None
