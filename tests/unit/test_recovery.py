"""The Recovery schedule: every few minutes the dispatcher resumes stalled fan-outs, and only that.

A campaign sent now whose fan-out step is lost would otherwise wait for the next newsletter
firing (daily by default); scheduled campaigns still start at the newsletter schedule only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import ModuleType

import boto3
import pytest

from mailroom.models import ScheduleInvocation, utcnow
from mailroom_local.cron import parse
from mailroom_local.scheduler import render_input
from mailroom_local.template import Stack
from tests.campaigns import Campaigns, Loader, mails_per_address, put_subscribers
from tests.conftest import LambdaContext
from tests.support import ACCOUNT, REGION, TEMPLATE, load_event, queue_messages

STALLED_AFTER = timedelta(seconds=900)  # resume_stalled's default


@pytest.fixture
def campaigns(stack: Stack, load_function: Loader) -> Campaigns:
    return Campaigns(stack, load_function, env={"FANOUT_PAGE_SIZE": "10", "RECIPIENTS_PER_TASK": "4"})


def _lose_fanout_steps(stack: Stack) -> None:
    """The fan-out steps of a start vanish (e.g. a message lost or deleted by mistake)."""
    boto3.client("sqs", region_name=REGION).purge_queue(QueueUrl=stack.queue_url("FanoutQueue"))
    assert queue_messages(stack, "FanoutQueue") == []


def _dispatcher_at(campaigns: Campaigns, monkeypatch: pytest.MonkeyPatch, at: datetime) -> ModuleType:
    dispatcher = campaigns.app("NewsletterDispatcherFunction")
    monkeypatch.setattr(dispatcher, "clock", lambda: at)
    return dispatcher


def test_a_recovery_firing_resumes_a_stalled_fan_out_and_starts_no_due_campaign(
    stack: Stack, campaigns: Campaigns, context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscribed = put_subscribers(stack, 6)
    due = campaigns.create(send_at="2026-11-01T10:00:00Z")  # scheduled and due: not recovery's business
    sent_now = campaigns.create()
    campaigns.send(sent_now["id"])
    _lose_fanout_steps(stack)
    event = load_event("newsletter_dispatcher_recovery.json")

    # not stalled yet: a recovery firing right away leaves the fan-out alone
    early = _dispatcher_at(campaigns, monkeypatch, utcnow())
    result = early.lambda_handler(event, context)
    assert (result["schedule"], result["ran"]) == ("Recovery", ["resume_stalled"])
    assert (result["started"], result["resumed"]) == ([], [])
    assert queue_messages(stack, "FanoutQueue") == []

    later = _dispatcher_at(campaigns, monkeypatch, utcnow() + STALLED_AFTER + timedelta(minutes=1))
    result = later.lambda_handler(event, context)
    assert (result["started"], result["resumed"]) == ([], [sent_now["id"]])
    assert campaigns.get(due["id"])["status"] == "scheduled"

    campaigns.run_fanout()  # the resumed steps
    campaigns.run_workers()
    assert campaigns.get(sent_now["id"])["status"] == "sent"
    assert mails_per_address() == dict.fromkeys(subscribed, 1)
    assert campaigns.get(due["id"])["status"] == "scheduled"


def test_the_daily_firing_still_starts_due_campaigns_and_resumes_stalled_fan_outs(
    stack: Stack, campaigns: Campaigns, context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscribed = put_subscribers(stack, 5)
    due = campaigns.create(send_at="2026-11-01T10:00:00Z")
    later = campaigns.create(send_at="2099-01-01T10:00:00Z")
    sent_now = campaigns.create()
    campaigns.send(sent_now["id"])
    _lose_fanout_steps(stack)

    dispatcher = _dispatcher_at(campaigns, monkeypatch, utcnow() + STALLED_AFTER + timedelta(minutes=1))
    result = dispatcher.lambda_handler(load_event("newsletter_dispatcher_schedule.json"), context)
    assert (result["schedule"], result["ran"]) == ("DailyNewsletter", ["start_due", "resume_stalled"])
    assert (result["started"], result["resumed"]) == ([due["id"]], [sent_now["id"]])

    campaigns.run_fanout()
    campaigns.run_workers()
    assert campaigns.get(due["id"])["status"] == "sent"
    assert campaigns.get(sent_now["id"])["status"] == "sent"
    assert campaigns.get(later["id"])["status"] == "scheduled"
    assert mails_per_address() == dict.fromkeys(subscribed, 2)  # one mail of each campaign


def test_the_recovery_schedule_fires_every_five_minutes_with_the_name_the_dispatcher_knows(
    stack: Stack, campaigns: Campaigns, context: LambdaContext
) -> None:
    schedules = {schedule.name: schedule for schedule in Stack.load(TEMPLATE).schedules}
    assert set(schedules) == {"DailyNewsletter", "Recovery"}
    recovery = schedules["Recovery"]
    assert (recovery.event_type, recovery.function, recovery.enabled) == (
        "ScheduleV2",
        "NewsletterDispatcherFunction",
        True,
    )
    assert recovery.expression == "rate(5 minutes)"
    start = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    expression = parse(recovery.expression, recovery.timezone, start=start)
    assert expression.next_after(start) == start + timedelta(minutes=5)
    # the payload Scheduler delivers, rendered from the template's Input, runs the recovery path
    payload = render_input(
        recovery,
        "arn:aws:scheduler:us-east-1:123456789012:schedule/default/Recovery",
        start,
        region=REGION,
        account_id=ACCOUNT,
        execution_id="e1",
    )
    assert ScheduleInvocation.model_validate(payload).schedule == "Recovery"
    assert payload.keys() == load_event("newsletter_dispatcher_recovery.json").keys()
    result = campaigns.app("NewsletterDispatcherFunction").lambda_handler(payload, context)
    assert result["ran"] == ["resume_stalled"]
    assert result["scheduled_time"] == "2026-11-28T10:00:00.000Z"


def test_the_recovery_schedule_is_a_parameter() -> None:
    overridden = Stack.load(TEMPLATE, overrides={"RecoverySchedule": "rate(1 minute)"})
    (recovery,) = [schedule for schedule in overridden.schedules if schedule.name == "Recovery"]
    assert recovery.expression == "rate(1 minute)"
    daily = next(schedule for schedule in overridden.schedules if schedule.name == "DailyNewsletter")
    assert daily.expression == "cron(0 10 * * ? *)"
