"""The subscriber lifecycle (register, confirm, unsubscribe) against the real adapters on moto."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError

from mailroom.adapters.dynamodb import SubscriberRepository
from mailroom.adapters.sqs import TaskQueue
from mailroom.logic.registration import (
    CONFIRMATION_LIMIT,
    CONFIRMATION_RESEND_SECONDS,
    CONFIRMATION_STALE_SECONDS,
    Lifecycle,
    Registered,
)
from mailroom.models import Registration, Subscriber, SubscriberStatus
from mailroom_local.template import Stack
from tests.support import REGION, queue_messages

START = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def subscribers(stack: Stack) -> SubscriberRepository:
    return SubscriberRepository(
        stack.physical_name("SubscribersTable"), client=boto3.client("dynamodb", region_name=REGION)
    )


@pytest.fixture
def welcome_queue(stack: Stack) -> TaskQueue:
    return TaskQueue(stack.queue_url("WelcomeQueue"), client=boto3.client("sqs", region_name=REGION))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lifecycle(subscribers: SubscriberRepository, welcome_queue: TaskQueue, clock: Clock) -> Lifecycle:
    ids = iter(f"s-{n}" for n in range(1, 100))
    return Lifecycle(
        subscribers, welcome_queue, confirmation_days=7, clock=clock, new_id=lambda: next(ids), sleep=clock.advance
    )


def tasks(stack: Stack) -> list[tuple[str, str, int | None]]:
    return [(t["kind"], t["subscriber_id"], t.get("seq")) for t in queue_messages(stack, "WelcomeQueue")]


def stored(subscribers: SubscriberRepository, email: str = "ada@example.com") -> Subscriber:
    subscriber = subscribers.get(email)
    assert subscriber is not None
    return subscriber


def test_a_new_address_is_pending_expires_and_gets_one_confirmation_mail(
    stack: Stack, lifecycle: Lifecycle, subscribers: SubscriberRepository
) -> None:
    assert lifecycle.register(Registration(email="Ada@Example.COM", name="Ada", consent="Yes, mail me")) is (
        Registered.NEW
    )
    subscriber = stored(subscribers)
    assert subscriber.status is SubscriberStatus.PENDING and subscriber.consent == "Yes, mail me"
    assert subscriber.expires_at == int((START + timedelta(days=7)).timestamp())
    assert (subscriber.confirmations, subscriber.confirmations_queued) == (1, 1)
    assert tasks(stack) == [("confirmation", "s-1", 1)]


def test_a_pending_address_gets_the_confirmation_again_at_most_once_per_few_minutes(
    stack: Stack, lifecycle: Lifecycle, subscribers: SubscriberRepository, clock: Clock
) -> None:
    lifecycle.register(Registration(email="ada@example.com"))
    clock.advance(CONFIRMATION_RESEND_SECONDS - 1)
    assert lifecycle.register(Registration(email="ada@example.com")) is Registered.LIMITED
    clock.advance(1)
    assert lifecycle.register(Registration(email="ada@example.com")) is Registered.RESENT
    assert tasks(stack) == [("confirmation", "s-1", 1), ("confirmation", "s-1", 2)]
    # the pending subscriber lives on from the last request
    assert stored(subscribers).expires_at == int((clock.now + timedelta(days=7)).timestamp())


@pytest.mark.parametrize("status", [SubscriberStatus.SUBSCRIBED, SubscriberStatus.SUPPRESSED])
def test_a_subscribed_or_suppressed_address_gets_nothing(
    stack: Stack, lifecycle: Lifecycle, subscribers: SubscriberRepository, status: SubscriberStatus
) -> None:
    subscribers.create(Subscriber(id="s-9", email="ada@example.com", status=status, created_at="2026-01-01T00:00:00Z"))
    assert lifecycle.register(Registration(email="ada@example.com")) is Registered.KNOWN
    assert tasks(stack) == []
    assert stored(subscribers).status is status


def test_an_unsubscribed_address_that_registers_again_must_confirm_again(
    stack: Stack, lifecycle: Lifecycle, subscribers: SubscriberRepository
) -> None:
    subscribers.create(
        Subscriber(
            id="s-9",
            email="ada@example.com",
            name="Old",
            consent="old consent",
            status=SubscriberStatus.UNSUBSCRIBED,
            created_at="2026-01-01Z",
            confirmations=1,
            confirmations_queued=1,
            confirmation_sent_at="2026-11-28T09:59:00.000Z",  # a minute ago: no resend limit now
            unsubscribed_at="2026-11-28T09:59:30.000Z",
        )
    )
    request = Registration(email="ada@example.com", name="Ada", consent="new consent")
    assert lifecycle.register(request) is Registered.RESENT
    subscriber = stored(subscribers)
    assert subscriber.status is SubscriberStatus.PENDING and subscriber.unsubscribed_at is None
    assert (subscriber.name, subscriber.consent) == ("Ada", "new consent")  # the new opt-in's record
    assert tasks(stack) == [("confirmation", "s-9", 2)]


def test_a_refused_confirmation_task_leaves_no_subscriber(
    lifecycle: Lifecycle, subscribers: SubscriberRepository, welcome_queue: TaskQueue
) -> None:
    refused = ClientError({"Error": {"Code": "InternalError", "Message": "no"}}, "SendMessage")
    with mock.patch.object(welcome_queue.client, "send_message", side_effect=refused), pytest.raises(ClientError):
        lifecycle.register(Registration(email="ada@example.com"))
    assert subscribers.get("ada@example.com") is None


def test_a_request_that_never_reached_the_queue_does_not_count_towards_the_resend_limit(
    stack: Stack, lifecycle: Lifecycle, subscribers: SubscriberRepository, welcome_queue: TaskQueue
) -> None:
    lifecycle.register(Registration(email="ada@example.com"))
    assert tasks(stack) == [("confirmation", "s-1", 1)]
    refused = ClientError({"Error": {"Code": "InternalError", "Message": "no"}}, "SendMessage")
    # a registration of the known, pending address whose queueing fails (the client sees an error) ...
    with mock.patch.object(welcome_queue.client, "send_message", side_effect=refused), pytest.raises(ClientError):
        _resend_now(lifecycle, subscribers)
    # ... does not lock the address out for the resend window: the retry watches the lost
    # request for CONFIRMATION_STALE_SECONDS, then queues the mail
    before = lifecycle.clock()
    assert lifecycle.register(Registration(email="ada@example.com")) is Registered.RESENT
    assert tasks(stack) == [("confirmation", "s-1", 3)]
    assert lifecycle.clock() - before >= timedelta(seconds=CONFIRMATION_STALE_SECONDS)


def _resend_now(lifecycle: Lifecycle, subscribers: SubscriberRepository) -> Registered:
    """A registration past the resend window (the window itself is tested above)."""
    assert isinstance(lifecycle.clock, Clock)
    lifecycle.clock.advance(CONFIRMATION_RESEND_SECONDS)
    return lifecycle.register(Registration(email="ada@example.com"))


def test_a_registration_whose_mark_fails_still_succeeds_and_the_next_one_may_resend(
    stack: Stack, lifecycle: Lifecycle, subscribers: SubscriberRepository, clock: Clock
) -> None:
    broken = ClientError({"Error": {"Code": "InternalServerError", "Message": "no"}}, "UpdateItem")
    with mock.patch.object(subscribers.client, "update_item", side_effect=broken):
        assert lifecycle.register(Registration(email="ada@example.com")) is Registered.NEW
    assert stored(subscribers).confirmations_queued == 0
    assert lifecycle.register(Registration(email="ada@example.com")) is Registered.RESENT
    assert tasks(stack) == [("confirmation", "s-1", 1), ("confirmation", "s-1", 2)]


def test_a_double_click_sends_one_confirmation_mail(
    stack: Stack, lifecycle: Lifecycle, subscribers: SubscriberRepository, welcome_queue: TaskQueue
) -> None:
    """The second request arrives while the first is still queueing its task (and the first
    stays there while the second watches it: time stands still in this test)."""
    lifecycle = replace(lifecycle, sleep=lambda seconds: None)
    lifecycle.register(Registration(email="ada@example.com"))
    queue_messages(stack, "WelcomeQueue")
    real_send = welcome_queue.send
    answers: list[Registered] = []

    def send_while_another_arrives(body: str, *args: object, **kwargs: object) -> str:
        answers.append(lifecycle.register(Registration(email="ada@example.com")))
        return real_send(body)

    clock = lifecycle.clock
    assert isinstance(clock, Clock)
    clock.advance(CONFIRMATION_RESEND_SECONDS)  # the resend window is over: one more may go
    with mock.patch.object(welcome_queue, "send", side_effect=send_while_another_arrives):
        assert lifecycle.register(Registration(email="ada@example.com")) is Registered.RESENT
    assert answers == [Registered.LIMITED]
    assert tasks(stack) == [("confirmation", "s-1", 2)]


def test_nobody_gets_more_than_the_limit_of_confirmation_mails(
    stack: Stack, lifecycle: Lifecycle, subscribers: SubscriberRepository, clock: Clock
) -> None:
    for _ in range(CONFIRMATION_LIMIT + 3):
        lifecycle.register(Registration(email="ada@example.com"))
        clock.advance(CONFIRMATION_RESEND_SECONDS)
    assert [seq for _, _, seq in tasks(stack)] == list(range(1, CONFIRMATION_LIMIT + 1))


def test_confirming_subscribes_once_and_queues_one_welcome(
    stack: Stack, lifecycle: Lifecycle, subscribers: SubscriberRepository
) -> None:
    lifecycle.register(Registration(email="ada@example.com"))
    queue_messages(stack, "WelcomeQueue")  # the confirmation task
    confirmed = lifecycle.confirm("s-1")
    assert confirmed is not None and confirmed.status is SubscriberStatus.SUBSCRIBED
    subscriber = stored(subscribers)
    assert subscriber.expires_at is None and subscriber.confirmed_at and subscriber.welcome_queued
    assert tasks(stack) == [("welcome", "s-1", None)]
    # a replayed confirmation link changes nothing and queues nothing
    again = lifecycle.confirm("s-1")
    assert again is not None and again.confirmed_at == subscriber.confirmed_at
    assert tasks(stack) == []


def test_a_confirmation_that_died_before_queueing_the_welcome_is_completed_by_the_next_click(
    stack: Stack, lifecycle: Lifecycle, subscribers: SubscriberRepository
) -> None:
    subscribers.create(
        Subscriber(id="s-9", email="ada@example.com", status=SubscriberStatus.SUBSCRIBED, created_at="2026-01-01Z")
    )
    lifecycle.confirm("s-9")
    assert tasks(stack) == [("welcome", "s-9", None)]


def test_confirming_an_unknown_or_expired_subscriber_finds_nobody(lifecycle: Lifecycle) -> None:
    assert lifecycle.confirm("no-such-id") is None


def test_a_confirmation_link_does_not_undo_an_unsubscribe(
    stack: Stack, lifecycle: Lifecycle, subscribers: SubscriberRepository
) -> None:
    lifecycle.register(Registration(email="ada@example.com"))
    lifecycle.confirm("s-1")
    assert lifecycle.unsubscribe("s-1")
    queue_messages(stack, "WelcomeQueue")
    after = lifecycle.confirm("s-1")
    assert after is not None and after.status is SubscriberStatus.UNSUBSCRIBED
    assert tasks(stack) == []


def test_unsubscribing_is_immediate_and_repeating_it_is_harmless(
    lifecycle: Lifecycle, subscribers: SubscriberRepository
) -> None:
    subscribers.create(
        Subscriber(id="s-9", email="ada@example.com", status=SubscriberStatus.SUBSCRIBED, created_at="2026-01-01Z")
    )
    assert lifecycle.unsubscribe("s-9") is True
    subscriber = stored(subscribers)
    assert subscriber.status is SubscriberStatus.UNSUBSCRIBED and subscriber.unsubscribed_at
    assert lifecycle.unsubscribe("s-9") is False
    assert lifecycle.unsubscribe("erased-id") is False
