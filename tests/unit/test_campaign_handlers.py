"""Campaigns through the real handlers (admin, dispatcher, fan-out, worker) under moto from template.yaml."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError

from mailroom_local.faults import SqsTimeTravel
from mailroom_local.template import Stack
from tests.campaigns import (
    Campaigns,
    Loader,
    api_event,
    assert_counters_match_records,
    mails_per_address,
    put_subscribers,
    records,
    set_status,
)
from tests.conftest import LambdaContext
from tests.support import REGION, load_event, queue_messages, sent_mails, sqs_event

SAMPLE_CAMPAIGN = "c0ffee00c0ffee00c0ffee00c0ffee01"


@pytest.fixture
def campaigns(stack: Stack, load_function: Loader) -> Campaigns:
    return Campaigns(stack, load_function, env={"FANOUT_PAGE_SIZE": "10", "RECIPIENTS_PER_TASK": "4"})


def _put_campaign(stack: Stack, campaign_id: str, status: str = "sending", **extra: Any) -> None:
    """A campaign item and (unless a draft) its progress item, as the admin API would leave them."""
    main_fields = ("subject", "content", "format", "status", "created_at", "updated_at", "due_at", "kind")
    values = {
        "id": campaign_id,
        "kind": "campaign",
        "subject": "December news for {{ name }}",
        "content": "Hello **{{ name }}**",
        "format": "markdown",
        "status": status,
        "created_at": "2026-11-28T09:00:00.000Z",
        "updated_at": "2026-11-28T09:00:00.000Z",
        "due_at": "2026-11-28T09:00:00.000Z",
        "segments": 1,
        "segments_left": 0,
        "recipients": 3,
        "sent": 0,
        "failed": 0,
        "skipped": 0,
        "uncertain": 0,
        "resolved": 0,
        "progressed_at": "2026-11-28T09:00:00.000Z",
    } | extra
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.physical_name("CampaignsTable"))
    table.put_item(Item={"id": campaign_id} | {k: v for k, v in values.items() if k in main_fields})
    progress = {k: v for k, v in values.items() if k not in main_fields and k != "id"}
    table.put_item(Item={"id": f"{campaign_id}#progress", "state": status} | progress)


def _sample_task_setup(stack: Stack) -> dict[str, Any]:
    """The campaign and subscribers the worker's sample event refers to."""
    event = load_event("newsletter_worker_sqs.json")
    _put_campaign(stack, SAMPLE_CAMPAIGN)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for recipient in json.loads(event["Records"][0]["body"])["recipients"]:
        dynamodb.put_item(
            TableName=stack.physical_name("SubscribersTable"),
            Item={
                "email": {"S": recipient["email"]},
                "id": {"S": recipient["id"]},
                "status": {"S": "subscribed"},
                "created_at": {"S": "2026-11-28T09:00:00.000Z"},
                **({"name": {"S": recipient["name"]}} if recipient.get("name") else {}),
            },
        )
    return event


# --------------------------------------------------------------------------- admin API


def test_admin_sample_event_creates_a_scheduled_campaign(stack: Stack, campaigns: Campaigns) -> None:
    response = campaigns.app("AdminFunction").lambda_handler(
        load_event("admin_create_campaign.json"), campaigns.context
    )
    assert response["statusCode"] == 201
    created = json.loads(response["body"])
    assert (created["status"], created["send_at"]) == ("scheduled", "2026-12-01T10:00:00.000Z")
    assert created["counters"] == {
        "recipients": 0,
        "queued": 0,
        "sent": 0,
        "failed": 0,
        "skipped": 0,
        "uncertain": 0,
    }
    assert campaigns.get(created["id"])["subject"] == "December news for {{ name }}"
    status, listed = campaigns.call("GET", "/admin/campaigns")
    assert status == 200
    assert [item["id"] for item in listed["items"]] == [created["id"]]


def test_campaigns_are_listed_newest_first_a_page_at_a_time(campaigns: Campaigns) -> None:
    ids = [campaigns.create(subject=f"Issue {n}")["id"] for n in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        status, page = campaigns.call(
            "GET", "/admin/campaigns", query={"limit": "2", **({"cursor": cursor} if cursor else {})}
        )
        assert status == 200 and len(page["items"]) <= 2
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"subject": "Hi\r\nBcc: x@example.com", "content": "x"}, 400, "subject"),
        ({"subject": "x" * 201, "content": "x"}, 400, "subject"),
        ({"subject": "   ", "content": "x"}, 400, "subject"),
        ({"subject": "Hi", "content": "x" * (100 * 1024 + 1)}, 400, "content"),
        ({"subject": "Hi", "content": "{{ nonsense }}"}, 400, "content"),
        ({"subject": "Hi", "content": "{% if %}"}, 400, "content"),
        ({"subject": "Hi", "content": "{{ ''.__class__.__mro__ }}"}, 400, "content"),
        ({"subject": "Hi {{ name", "content": "x"}, 400, "subject"),
        ({"subject": "Hi", "content": "x", "format": "docx"}, 400, "format"),
        ({"subject": "Hi", "content": "x", "send_at": "2026-12-01T10:00:00"}, 400, "send_at"),
        ({"subject": "Hi", "content": "x", "send_at": "tomorrow"}, 400, "send_at"),
        ({"subject": "Hi", "content": "x", "status": "sent"}, 400, "status"),
        ({"content": "x"}, 400, "subject"),
    ],
)
def test_bad_campaign_fields_are_a_400_naming_the_field_and_store_nothing(
    campaigns: Campaigns, body: dict[str, Any], status: int, field: str
) -> None:
    code, answer = campaigns.call("POST", "/admin/campaigns", body)
    assert code == status
    assert answer["error"]["field"] == field, answer
    assert campaigns.call("GET", "/admin/campaigns")[1]["items"] == []


def test_an_oversized_body_is_a_413_and_a_non_json_one_a_415(campaigns: Campaigns) -> None:
    admin = campaigns.app("AdminFunction")
    big = api_event("POST", "/admin/campaigns", {"subject": "Hi", "content": "x" * (300 * 1024)})
    assert admin.lambda_handler(big, campaigns.context)["statusCode"] == 413
    plain = api_event("POST", "/admin/campaigns", "subject=Hi")
    plain["headers"] = {**plain["headers"], "Content-Type": "text/plain"}
    plain["multiValueHeaders"] = {**plain["multiValueHeaders"], "Content-Type": ["text/plain"]}
    assert admin.lambda_handler(plain, campaigns.context)["statusCode"] == 415


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PATCH", "", {"subject": "x"}),
        ("POST", "/send", None),
        ("POST", "/cancel", None),
        ("POST", "/preview", None),
        ("POST", "/test", {"email": "ada@example.com"}),
        ("GET", "/recipients", None),
    ],
)
def test_an_unknown_campaign_is_a_404(campaigns: Campaigns, method: str, suffix: str, body: Any) -> None:
    status, answer = campaigns.call(method, f"/admin/campaigns/nope{suffix}", body)
    assert status == 404
    assert answer["error"]["code"] == "not_found"


def test_sending_a_sent_or_cancelled_campaign_is_a_409(stack: Stack, campaigns: Campaigns) -> None:
    put_subscribers(stack, 2)
    campaign = campaigns.create()
    campaigns.send(campaign["id"])
    assert campaigns.call("POST", f"/admin/campaigns/{campaign['id']}/send")[0] == 409  # sending
    assert campaigns.call("PATCH", f"/admin/campaigns/{campaign['id']}", {"subject": "x"})[0] == 409
    campaigns.run_fanout()
    campaigns.run_workers()
    assert campaigns.get(campaign["id"])["status"] == "sent"
    status, answer = campaigns.call("POST", f"/admin/campaigns/{campaign['id']}/send")
    assert (status, answer["error"]["code"]) == (409, "conflict")
    assert campaigns.call("POST", f"/admin/campaigns/{campaign['id']}/cancel")[0] == 409
    other = campaigns.create()
    assert campaigns.call("POST", f"/admin/campaigns/{other['id']}/cancel")[0] == 200
    assert campaigns.call("POST", f"/admin/campaigns/{other['id']}/send")[0] == 409
    assert campaigns.call("POST", f"/admin/campaigns/{other['id']}/cancel")[0] == 409
    assert queue_messages(stack, "FanoutQueue") == []


def test_a_draft_can_be_edited_scheduled_and_unscheduled(campaigns: Campaigns) -> None:
    campaign = campaigns.create()
    path = f"/admin/campaigns/{campaign['id']}"
    status, edited = campaigns.call("PATCH", path, {"subject": "New subject", "send_at": "2026-12-24T09:00:00+01:00"})
    assert status == 200
    assert (edited["subject"], edited["status"], edited["send_at"]) == (
        "New subject",
        "scheduled",
        "2026-12-24T08:00:00.000Z",
    )
    status, edited = campaigns.call("PATCH", path, {"send_at": None})
    assert (status, edited["status"], edited["send_at"]) == (200, "draft", None)
    status, answer = campaigns.call("PATCH", path, {"content": "{{ broken"})
    assert (status, answer["error"]["field"]) == (400, "content")
    assert campaigns.get(campaign["id"])["content"] == "Hello {{ name }}"


def test_preview_renders_for_a_subscriber_and_escapes_their_name(stack: Stack, campaigns: Campaigns) -> None:
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=stack.physical_name("SubscribersTable"),
        Item={
            "email": {"S": "eve@example.com"},
            "id": {"S": "id-eve"},
            "name": {"S": "<script>alert(1)</script>"},
            "status": {"S": "subscribed"},
            "created_at": {"S": "2026"},
        },
    )
    campaign = campaigns.create(subject="For {{ name }}", content="# Hi {{ name }}\n\n[Leave]({{ unsubscribe_url }})")
    status, preview = campaigns.call("POST", f"/admin/campaigns/{campaign['id']}/preview", {"email": "EVE@example.com"})
    assert status == 200
    assert "<script>" not in preview["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in preview["html"]
    assert '<a href="https://' in preview["html"] and "/unsubscribe?token=" in preview["html"]
    assert preview["subject"] == "For <script>alert(1)</script>"  # a subject is text, not HTML
    assert "# Hi <script>" in preview["text"]
    # without a body: a sample recipient
    status, sample = campaigns.call("POST", f"/admin/campaigns/{campaign['id']}/preview")
    assert (status, sample["subject"]) == (200, "For Ada Lovelace")
    # unsaved content (the editor's live preview)
    status, draft = campaigns.call(
        "POST", "/admin/campaigns/preview", {"subject": "S", "content": "<p>Hi {{ name }}</p>", "format": "html"}
    )
    assert status == 200 and "<p>Hi Ada Lovelace</p>" in draft["html"] and "Hi Ada Lovelace" in draft["text"]


def test_a_test_send_mails_one_marked_copy_and_records_nothing(stack: Stack, campaigns: Campaigns) -> None:
    campaign = campaigns.create(subject="Big news")
    status, sent = campaigns.call("POST", f"/admin/campaigns/{campaign['id']}/test", {"email": "Me@Example.com"})
    assert status == 202 and sent["to"] == "me@example.com" and sent["message_id"]
    (mail,) = sent_mails()
    assert mail.subject == "[Test] Big news" and mail.to == ["me@example.com"]
    assert records(stack, campaign["id"]) == {}
    assert campaigns.get(campaign["id"])["status"] == "draft"
    status, answer = campaigns.call("POST", f"/admin/campaigns/{campaign['id']}/test", {"email": "not-an-address"})
    assert (status, answer["error"]["field"]) == (400, "email")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "abc"}, "cursor"),
    ],
)
def test_bad_recipient_queries_are_a_400(campaigns: Campaigns, query: dict[str, str], field: str) -> None:
    campaign = campaigns.create()
    status, answer = campaigns.call("GET", f"/admin/campaigns/{campaign['id']}/recipients", query=query)
    assert (status, answer["error"]["field"]) == (400, field)


# --------------------------------------------------------------------------- sending a campaign


def test_a_campaign_reaches_every_subscriber_once_and_counters_equal_records(
    stack: Stack, campaigns: Campaigns
) -> None:
    subscribed = put_subscribers(stack, 57, unsubscribed_every=7)
    campaign = campaigns.create(subject="Hello {{ name }}")
    campaigns.send(campaign["id"])
    assert campaigns.run_fanout() >= 4  # one chain per segment, several pages each
    assert all(response == {"batchItemFailures": []} for response in campaigns.run_workers())
    final = campaigns.get(campaign["id"])
    assert final["status"] == "sent" and final["finished_at"]
    assert final["counters"] | {} == {
        "recipients": len(subscribed),
        "queued": 0,
        "sent": len(subscribed),
        "failed": 0,
        "skipped": 0,
        "uncertain": 0,
    }
    assert mails_per_address() == dict.fromkeys(subscribed, 1)
    assert assert_counters_match_records(stack, final) == {"sent": len(subscribed)}
    one = next(mail for mail in sent_mails() if mail.to == ["r1@example.com"])
    assert one.subject == "Hello Reader 1" and one.html
    # RFC 8058 one-click headers (the API's route), and the web app's page for the same token in the body
    assert one.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = one.headers["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://") and "/api/unsubscribe?token=" in link
    assert link.replace("/api/unsubscribe?", "/unsubscribe?") in (one.text or "")


def test_a_fan_out_killed_mid_way_resumes_with_nobody_skipped_or_repeated(stack: Stack, load_function: Loader) -> None:
    campaigns = Campaigns(stack, load_function, env={"FANOUT_PAGE_SIZE": "10", "FANOUT_SEGMENTS": "1"})
    campaigns.context = LambdaContext(remaining_ms=120_000)  # time for every page in one step
    subscribed = put_subscribers(stack, 45)
    campaign = campaigns.create()
    campaigns.send(campaign["id"])
    fanout = campaigns.app("FanoutFunction")
    steps = queue_messages(stack, "FanoutQueue")
    # The first step dies after queueing its second page's tasks, before recording its progress
    real_advance = fanout.campaigns.advance
    calls = {"n": 0}

    def dies_on_second_page(*args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("Lambda died")
        return bool(real_advance(*args, **kwargs))

    with mock.patch.object(fanout.campaigns, "advance", side_effect=dies_on_second_page):
        failed = fanout.lambda_handler(sqs_event(stack, "FanoutQueue", steps[:1]), campaigns.context)
    assert len(failed["batchItemFailures"]) == 1
    # Meanwhile the table changes: a new subscriber, one unsubscribes
    (newcomer,) = put_subscribers(stack, 1, start=1000)
    set_status(stack, subscribed[0], "unsubscribed")
    # The step is redelivered (with the others) and the fan-out runs to its end
    for step in steps:
        assert fanout.lambda_handler(sqs_event(stack, "FanoutQueue", [step]), campaigns.context) == {
            "batchItemFailures": []
        }
    campaigns.run_fanout()
    tasks = queue_messages(stack, "NewsletterQueue")
    names = [task["task"] for task in tasks]
    assert len(names) > len(set(names))  # the died page's tasks were queued twice ...
    duplicated = {name for name in names if names.count(name) > 1}
    by_name: dict[str, list[list[str]]] = {}
    for task in tasks:
        by_name.setdefault(task["task"], []).append([r["id"] for r in task["recipients"]])
    assert all(len({tuple(r) for r in by_name[name]}) == 1 for name in duplicated)  # ... identically (replayed)
    app = campaigns.app("NewsletterWorkerFunction")
    for start in range(0, len(tasks), 5):
        app.lambda_handler(sqs_event(stack, "NewsletterQueue", tasks[start : start + 5]), campaigns.context)
    final = campaigns.get(campaign["id"])
    counts = mails_per_address()
    assert max(counts.values()) == 1  # nobody repeated
    assert set(counts) - {newcomer} == set(subscribed[1:])  # nobody skipped
    assert subscribed[0] not in counts  # unsubscribed before its mail: skipped (or not selected at all)
    # one who subscribed during the fan-out is mailed if the scan had not passed their place yet
    statuses = assert_counters_match_records(stack, final)
    assert final["counters"]["recipients"] == sum(statuses.values()) == len(records(stack, campaign["id"]))
    assert final["status"] == "sent"


def test_a_schedule_that_fires_twice_sends_the_due_campaign_once(
    stack: Stack, campaigns: Campaigns, context: LambdaContext
) -> None:
    subscribed = put_subscribers(stack, 6)
    due = campaigns.create(send_at="2026-11-01T10:00:00Z")
    later = campaigns.create(send_at="2099-01-01T10:00:00Z")
    draft = campaigns.create()
    dispatcher = campaigns.app("NewsletterDispatcherFunction")
    other = campaigns.load_function("NewsletterDispatcherFunction")  # a second, overlapping dispatcher
    first = dispatcher.lambda_handler(load_event("newsletter_dispatcher_schedule.json"), context)
    second = other.lambda_handler(load_event("newsletter_dispatcher_schedule.json"), context)
    assert first["started"] == [due["id"]] and second["started"] == []
    steps = queue_messages(stack, "FanoutQueue")
    assert len(steps) == 4 and {s["campaign_id"] for s in steps} == {due["id"]}
    for step in steps:
        campaigns.app("FanoutFunction").lambda_handler(sqs_event(stack, "FanoutQueue", [step]), context)
    campaigns.run_workers()
    assert mails_per_address() == dict.fromkeys(subscribed, 1)
    assert campaigns.get(due["id"])["status"] == "sent"
    assert campaigns.get(later["id"])["status"] == "scheduled"
    assert campaigns.get(draft["id"])["status"] == "draft"


def test_a_stalled_fan_out_is_resumed_by_the_next_schedule_firing(
    stack: Stack, campaigns: Campaigns, context: LambdaContext
) -> None:
    put_subscribers(stack, 3)
    _put_campaign(
        stack,
        "stalled",
        segments=1,
        segments_left=1,
        seg0_seq=0,
        recipients=0,
        progressed_at="2026-11-28T08:00:00.000Z",
    )
    result = campaigns.app("NewsletterDispatcherFunction").lambda_handler(
        load_event("newsletter_dispatcher_schedule.json"), context
    )
    assert result["resumed"] == ["stalled"]
    campaigns.run_fanout()
    campaigns.run_workers()
    assert len(sent_mails()) == 3 and campaigns.get("stalled")["status"] == "sent"


def test_fanout_sample_event_fans_out_its_segment(stack: Stack, campaigns: Campaigns) -> None:
    put_subscribers(stack, 9)
    _put_campaign(stack, SAMPLE_CAMPAIGN, segments=1, segments_left=1, seg0_seq=0, recipients=0)
    response = campaigns.app("FanoutFunction").lambda_handler(load_event("fanout_sqs.json"), campaigns.context)
    assert response == {"batchItemFailures": []}
    tasks = queue_messages(stack, "NewsletterQueue")
    assert sorted(r["email"] for task in tasks for r in task["recipients"]) == sorted(
        f"r{i}@example.com" for i in range(9)
    )
    assert all(len(task["recipients"]) <= 4 for task in tasks)
    assert campaigns.get(SAMPLE_CAMPAIGN)["counters"]["recipients"] == 9


# --------------------------------------------------------------------------- the worker


def test_newsletter_worker_sample_event_sends_each_recipient_once(stack: Stack, campaigns: Campaigns) -> None:
    event = _sample_task_setup(stack)
    app = campaigns.app("NewsletterWorkerFunction")
    assert app.lambda_handler(event, campaigns.context) == {"batchItemFailures": []}
    assert sorted(mails_per_address()) == ["ada@example.com", "alan@example.com", "grace@example.com"]
    assert {mail.subject for mail in sent_mails()} == {
        "December news for Ada Lovelace",
        "December news for Grace Hopper",
        "December news for",
    }
    campaign = campaigns.get(SAMPLE_CAMPAIGN)
    assert campaign["status"] == "sent"
    assert assert_counters_match_records(stack, campaign) == {"sent": 3}
    assert all(record["message_id"] and record["resolved_at"] for record in records(stack, SAMPLE_CAMPAIGN).values())
    # a duplicate delivery of the same task sends nothing more and counts nothing more
    assert app.lambda_handler(event, campaigns.context) == {"batchItemFailures": []}
    assert len(sent_mails()) == 3
    assert campaigns.get(SAMPLE_CAMPAIGN)["counters"]["sent"] == 3


def _throttle_every_other(app: Any) -> Any:
    real_send = app.campaign_sender.mailer.client.send_email
    calls = {"n": 0}

    def throttled(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            raise ClientError(
                {"Error": {"Code": "TooManyRequestsException", "Message": "Maximum sending rate exceeded."}},
                "SendEmail",
            )
        return real_send(**kwargs)

    return throttled


def test_throttled_mails_are_handed_back_later_never_failed_nor_dead_lettered(
    stack: Stack, campaigns: Campaigns
) -> None:
    event = _sample_task_setup(stack)
    app = campaigns.app("NewsletterWorkerFunction")
    app.campaign_sender.pacer.penalize = lambda seconds: None  # keep the test fast
    handed: list[tuple[str, int]] = []
    with (
        mock.patch.object(app.campaign_sender.mailer.client, "send_email", side_effect=_throttle_every_other(app)),
        mock.patch.object(
            app.newsletter_queue,
            "send",
            side_effect=lambda body, **kw: handed.append((body, kw["delay_seconds"])) or "m",
        ),
    ):
        response = app.lambda_handler(event, campaigns.context)
    # the message itself succeeded (no receive count towards the DLQ) ...
    assert response == {"batchItemFailures": []}
    # ... and the throttled recipient went back on the queue as a new, delayed task
    ((body, delay),) = handed
    rest = json.loads(body)
    assert rest["attempt"] == 1 and 1 <= delay <= 3 and len(rest["recipients"]) == 1
    campaign = campaigns.get(SAMPLE_CAMPAIGN)
    assert campaign["counters"]["failed"] == 0 and campaign["counters"]["sent"] == 2
    assert campaign["status"] == "sending"
    throttled_id = rest["recipients"][0]["id"]
    assert records(stack, SAMPLE_CAMPAIGN)[throttled_id]["status"] == "released"
    # the handed-back task is sent later
    assert app.lambda_handler(sqs_event(stack, "NewsletterQueue", [rest]), campaigns.context) == {
        "batchItemFailures": []
    }
    assert len(sent_mails()) == 3 and max(mails_per_address().values()) == 1
    final = campaigns.get(SAMPLE_CAMPAIGN)
    assert final["status"] == "sent" and assert_counters_match_records(stack, final) == {"sent": 3}


def test_a_transient_ses_error_hands_the_recipient_back_with_the_failure_counted(
    stack: Stack, campaigns: Campaigns
) -> None:
    event = _sample_task_setup(stack)
    app = campaigns.app("NewsletterWorkerFunction")
    real_send = app.campaign_sender.mailer.client.send_email
    calls = {"n": 0}

    def flaky(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ClientError({"Error": {"Code": "InternalFailure", "Message": "try later"}}, "SendEmail")
        return real_send(**kwargs)

    with mock.patch.object(app.campaign_sender.mailer.client, "send_email", side_effect=flaky):
        first = app.lambda_handler(event, campaigns.context)
    # not a batch item failure (that would count towards maxReceiveCount): a new, delayed message
    assert first == {"batchItemFailures": []}
    assert len(sent_mails()) == 2
    assert campaigns.get(SAMPLE_CAMPAIGN)["counters"]["sent"] == 2
    assert queue_messages(stack, "NewsletterQueue") == []  # delayed: a backoff of about 2 s
    travel = SqsTimeTravel().install()
    try:
        travel.advance(5)
        (rest,) = queue_messages(stack, "NewsletterQueue")
    finally:
        travel.uninstall()
    assert rest["failures"] == 1 and rest["attempt"] == 0 and len(rest["recipients"]) == 1
    # a duplicate delivery of the original task sends nothing more
    assert app.lambda_handler(event, campaigns.context) == {"batchItemFailures": []}
    assert app.lambda_handler(sqs_event(stack, "NewsletterQueue", [rest]), campaigns.context) == {
        "batchItemFailures": []
    }
    assert mails_per_address() == {"ada@example.com": 1, "alan@example.com": 1, "grace@example.com": 1}
    assert campaigns.get(SAMPLE_CAMPAIGN)["status"] == "sent"


def _dead_letters(stack: Stack, logical_id: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    return sqs.receive_message(
        QueueUrl=stack.queue_url(logical_id), MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", [])


def test_a_recipient_whose_failures_are_used_up_goes_to_the_dead_letter_queue_with_the_reason(
    stack: Stack, campaigns: Campaigns
) -> None:
    event = _sample_task_setup(stack)
    body = json.loads(event["Records"][0]["body"])
    event["Records"][0]["body"] = json.dumps(body | {"failures": 8})
    app = campaigns.app("NewsletterWorkerFunction")
    down = ClientError({"Error": {"Code": "InternalFailure", "Message": "SES is down"}}, "SendEmail")
    with mock.patch.object(app.campaign_sender.mailer.client, "send_email", side_effect=down):
        assert app.lambda_handler(event, campaigns.context) == {"batchItemFailures": []}
    assert queue_messages(stack, "NewsletterQueue") == []
    (dead,) = _dead_letters(stack, "NewsletterDeadLetterQueue")
    assert "InternalFailure: SES is down" in dead["MessageAttributes"]["error"]["StringValue"]
    task = json.loads(dead["Body"])
    assert task["failures"] == 9 and len(task["recipients"]) == 3
    assert campaigns.get(SAMPLE_CAMPAIGN)["counters"]["queued"] == 3  # not resolved: waiting for a redrive
    assert sent_mails() == []


def test_a_malformed_task_goes_straight_to_the_dead_letter_queue(stack: Stack, campaigns: Campaigns) -> None:
    event = sqs_event(stack, "NewsletterQueue", [{"kind": "campaign", "campaign_id": "x"}])
    app = campaigns.app("NewsletterWorkerFunction")
    assert app.lambda_handler(event, campaigns.context) == {"batchItemFailures": []}
    (dead,) = _dead_letters(stack, "NewsletterDeadLetterQueue")
    assert "invalid campaign task" in dead["MessageAttributes"]["error"]["StringValue"]
    assert json.loads(dead["Body"]) == {"kind": "campaign", "campaign_id": "x"}


def test_a_rejected_address_is_failed_with_its_reason_and_listed(stack: Stack, campaigns: Campaigns) -> None:
    event = _sample_task_setup(stack)
    app = campaigns.app("NewsletterWorkerFunction")
    real_send = app.campaign_sender.mailer.client.send_email

    def rejects_grace(**kwargs: Any) -> Any:
        if kwargs["Destination"]["ToAddresses"] == ["grace@example.com"]:
            raise ClientError({"Error": {"Code": "MessageRejected", "Message": "Address blacklisted."}}, "SendEmail")
        return real_send(**kwargs)

    with mock.patch.object(app.campaign_sender.mailer.client, "send_email", side_effect=rejects_grace):
        assert app.lambda_handler(event, campaigns.context) == {"batchItemFailures": []}
    campaign = campaigns.get(SAMPLE_CAMPAIGN)
    assert campaign["status"] == "sent"
    assert assert_counters_match_records(stack, campaign) == {"sent": 2, "failed": 1}
    status, page = campaigns.call("GET", f"/admin/campaigns/{SAMPLE_CAMPAIGN}/recipients", query={"status": "failed"})
    assert status == 200
    (failed,) = page["items"]
    assert failed["email"] == "grace@example.com" and "Address blacklisted" in failed["error"]
    assert page["next_cursor"] is None


def test_recipients_are_paged_with_a_cursor(stack: Stack, campaigns: Campaigns) -> None:
    put_subscribers(stack, 11)
    campaign = campaigns.create()
    campaigns.send(campaign["id"])
    campaigns.run_fanout()
    campaigns.run_workers()
    seen: list[str] = []
    cursor = None
    while True:
        query = {"status": "sent", "limit": "4", **({"cursor": cursor} if cursor else {})}
        status, page = campaigns.call("GET", f"/admin/campaigns/{campaign['id']}/recipients", query=query)
        assert status == 200 and len(page["items"]) <= 4
        seen.extend(item["email"] for item in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(f"r{i}@example.com" for i in range(11))


def test_who_unsubscribed_after_the_fan_out_is_skipped(stack: Stack, campaigns: Campaigns) -> None:
    event = _sample_task_setup(stack)
    set_status(stack, "ada@example.com", "unsubscribed")
    assert campaigns.app("NewsletterWorkerFunction").lambda_handler(event, campaigns.context) == {
        "batchItemFailures": []
    }
    assert "ada@example.com" not in mails_per_address()
    campaign = campaigns.get(SAMPLE_CAMPAIGN)
    assert assert_counters_match_records(stack, campaign) == {"sent": 2, "skipped": 1}
    status, page = campaigns.call("GET", f"/admin/campaigns/{SAMPLE_CAMPAIGN}/recipients", query={"status": "skipped"})
    assert status == 200
    assert [(r["email"], r["error"]) for r in page["items"]] == [("ada@example.com", "no longer subscribed")]


def test_a_cancelled_campaign_sends_nothing_more(stack: Stack, campaigns: Campaigns) -> None:
    put_subscribers(stack, 12)
    campaign = campaigns.create()
    campaigns.send(campaign["id"])
    campaigns.run_fanout()
    status, cancelled = campaigns.call("POST", f"/admin/campaigns/{campaign['id']}/cancel")
    assert (status, cancelled["status"]) == (200, "cancelled")
    campaigns.run_workers()
    assert sent_mails() == []
    final = campaigns.get(campaign["id"])
    assert assert_counters_match_records(stack, final) == {"skipped": 12}
    assert final["status"] == "cancelled"


def test_a_worker_near_its_timeout_hands_its_records_back_unsent(stack: Stack, campaigns: Campaigns) -> None:
    event = _sample_task_setup(stack)
    app = campaigns.app("NewsletterWorkerFunction")
    with mock.patch.object(LambdaContext, "get_remaining_time_in_millis", return_value=5_000):
        response = app.lambda_handler(event, LambdaContext(aws_request_id="late"))
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert sent_mails() == [] and records(stack, SAMPLE_CAMPAIGN) == {}
    assert app.lambda_handler(event, campaigns.context) == {"batchItemFailures": []}
    assert len(sent_mails()) == 3


def test_a_worker_whose_budget_runs_out_mid_task_hands_the_rest_back(stack: Stack, campaigns: Campaigns) -> None:
    event = _sample_task_setup(stack)
    app = campaigns.app("NewsletterWorkerFunction")
    app.campaign_sender.executor = _InlineExecutor()
    checks = {"n": 0}

    def expires_after_first_send(self: Any) -> bool:
        checks["n"] += 1
        return checks["n"] > 3  # process() checks once, the first recipient before and after its claim: spent

    handed: list[str] = []
    with (
        mock.patch("mailroom.worker.Budget.expired", expires_after_first_send),
        mock.patch.object(app.newsletter_queue, "send", side_effect=lambda body, **kw: handed.append(body) or "m"),
    ):
        assert app.lambda_handler(event, campaigns.context) == {"batchItemFailures": []}
    assert len(sent_mails()) == 1
    (rest,) = [json.loads(body) for body in handed]
    assert len(rest["recipients"]) == 2 and rest["attempt"] == 0
    assert app.lambda_handler(sqs_event(stack, "NewsletterQueue", [rest]), campaigns.context) == {
        "batchItemFailures": []
    }
    assert len(sent_mails()) == 3 and max(mails_per_address().values()) == 1


def _claimed_by(stack: Stack, subscriber_id: str, email: str, claim: str, claimed_at: str) -> None:
    """A record another attempt claimed (``sending``) and has not resolved."""
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=stack.physical_name("ResultsTable"),
        Item={
            "pk": {"S": f"campaign#{SAMPLE_CAMPAIGN}"},
            "sk": {"S": subscriber_id},
            "status": {"S": "sending"},
            "claim": {"S": claim},
            "claimed_at": {"S": claimed_at},
            "email": {"S": email},
        },
    )


def test_a_claim_left_by_a_crashed_worker_is_resolved_uncertain_and_never_resent(
    stack: Stack, campaigns: Campaigns
) -> None:
    event = _sample_task_setup(stack)
    recipients = json.loads(event["Records"][0]["body"])["recipients"]
    # A worker claimed (and perhaps sent) Ada's mail long ago and died before recording it
    _claimed_by(stack, recipients[0]["id"], "ada@example.com", "dead-worker", "2026-11-28T09:40:00.000Z")
    app = campaigns.app("NewsletterWorkerFunction")
    assert app.lambda_handler(event, campaigns.context) == {"batchItemFailures": []}
    assert "ada@example.com" not in mails_per_address()
    campaign = campaigns.get(SAMPLE_CAMPAIGN)
    assert campaign["status"] == "sent"
    assert assert_counters_match_records(stack, campaign) == {"sent": 2, "uncertain": 1}


@pytest.mark.parametrize("cause", ["unsubscribed", "cancelled"])
def test_a_skip_over_a_claim_left_by_a_crashed_worker_resolves_it_uncertain(
    stack: Stack, campaigns: Campaigns, cause: str
) -> None:
    event = _sample_task_setup(stack)
    recipients = json.loads(event["Records"][0]["body"])["recipients"]
    _claimed_by(stack, recipients[0]["id"], "ada@example.com", "dead-worker", "2026-11-28T09:40:00.000Z")
    if cause == "unsubscribed":
        set_status(stack, "ada@example.com", "unsubscribed")
    else:
        assert campaigns.call("POST", f"/admin/campaigns/{SAMPLE_CAMPAIGN}/cancel")[0] == 200
    app = campaigns.app("NewsletterWorkerFunction")
    assert app.lambda_handler(event, campaigns.context) == {"batchItemFailures": []}
    # the skip cannot overwrite a claim that may have sent: it waits for it, and resolves it
    # `uncertain` once it is stale - the campaign completes, counters equal records
    assert records(stack, SAMPLE_CAMPAIGN)[recipients[0]["id"]]["status"] == "uncertain"
    campaign = campaigns.get(SAMPLE_CAMPAIGN)
    assert campaign["counters"]["queued"] == 0
    statuses = assert_counters_match_records(stack, campaign)
    assert statuses["uncertain"] == 1 and "ada@example.com" not in mails_per_address()


def test_an_unexpected_error_before_a_send_hands_the_recipient_back(stack: Stack, campaigns: Campaigns) -> None:
    event = _sample_task_setup(stack)
    app = campaigns.app("NewsletterWorkerFunction")
    real_render = app.campaign_sender.renderer
    calls = {"n": 0}

    def flaky_renderer(campaign: Any) -> Any:
        renderer = real_render(campaign)

        class Flaky:
            def render(self, recipient: Any, tags: Any = None) -> Any:
                calls["n"] += 1
                if recipient.email == "grace@example.com" and calls["n"] < 4:
                    raise RuntimeError("a bug")
                return renderer.render(recipient, tags)

        return Flaky()

    handed: list[str] = []
    with (
        mock.patch.object(app.campaign_sender, "renderer", side_effect=flaky_renderer),
        mock.patch.object(app.newsletter_queue, "send", side_effect=lambda body, **kw: handed.append(body) or "m"),
    ):
        assert app.lambda_handler(event, campaigns.context) == {"batchItemFailures": []}
    (rest,) = [json.loads(body) for body in handed]
    assert [r["email"] for r in rest["recipients"]] == ["grace@example.com"] and rest["failures"] == 1
    assert app.lambda_handler(sqs_event(stack, "NewsletterQueue", [rest]), campaigns.context) == {
        "batchItemFailures": []
    }
    assert mails_per_address() == {"ada@example.com": 1, "alan@example.com": 1, "grace@example.com": 1}


def test_a_fresh_claim_of_a_live_worker_is_looked_at_again_later(stack: Stack, campaigns: Campaigns) -> None:
    event = _sample_task_setup(stack)
    recipients = json.loads(event["Records"][0]["body"])["recipients"]
    app = campaigns.app("NewsletterWorkerFunction")
    _claimed_by(stack, recipients[0]["id"], "ada@example.com", "live-worker", app.campaign_sender.now())
    handed: list[tuple[str, int]] = []
    with mock.patch.object(
        app.newsletter_queue, "send", side_effect=lambda body, **kw: handed.append((body, kw["delay_seconds"])) or "m"
    ):
        assert app.lambda_handler(event, campaigns.context) == {"batchItemFailures": []}
    ((body, delay),) = handed
    assert [r["id"] for r in json.loads(body)["recipients"]] == [recipients[0]["id"]] and delay == 900
    assert campaigns.get(SAMPLE_CAMPAIGN)["status"] == "sending"


def test_a_task_of_an_unknown_campaign_is_dropped(stack: Stack, campaigns: Campaigns) -> None:
    event = load_event("newsletter_worker_sqs.json")  # its campaign does not exist
    app = campaigns.app("NewsletterWorkerFunction")
    assert app.lambda_handler(event, campaigns.context) == {"batchItemFailures": []}
    assert sent_mails() == []
    assert _dead_letters(stack, "NewsletterDeadLetterQueue") == []


class _InlineExecutor:
    """Runs each submitted call at once (a deterministic stand-in for the thread pool)."""

    def submit(self, fn: Any, *args: Any) -> Any:
        from concurrent.futures import Future

        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # pragma: no cover - surfaced by future.result()
            future.set_exception(exc)
        return future


def test_a_campaign_with_nobody_to_send_to_is_sent_at_once(stack: Stack, campaigns: Campaigns) -> None:
    put_subscribers(stack, 3, unsubscribed_every=1)  # all unsubscribed
    campaign = campaigns.create()
    campaigns.send(campaign["id"])
    campaigns.run_fanout()
    assert queue_messages(stack, "NewsletterQueue") == []
    final = campaigns.get(campaign["id"])
    assert final["status"] == "sent" and final["fanout_done"]
    assert final["counters"]["recipients"] == 0 and sent_mails() == []
