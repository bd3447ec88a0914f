"""Registration logic against the real adapters on moto (tables from template.yaml)."""

from __future__ import annotations

from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError

from mailroom.adapters.dynamodb import SubscriberRepository
from mailroom.adapters.sqs import TaskQueue
from mailroom.logic.registration import register
from mailroom.models import Registration, Subscriber
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


def test_a_registration_whose_mark_fails_still_succeeds(
    stack: Stack, subscribers: SubscriberRepository, welcome_queue: TaskQueue
) -> None:
    broken = ClientError({"Error": {"Code": "InternalServerError", "Message": "no"}}, "UpdateItem")
    with mock.patch.object(subscribers.client, "update_item", side_effect=broken):
        result = register(Registration(email="ada@example.com"), subscribers, welcome_queue)
    assert result.created
    assert len(queue_messages(stack, "WelcomeQueue")) == 1
    assert subscribers.get("ada@example.com") is not None
