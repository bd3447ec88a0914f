"""Subscriber management through the admin handler under moto: list, search, import, export, erase."""

from __future__ import annotations

import base64
import copy
import csv
import io
import json
import threading
import zlib
from typing import Any
from unittest import mock

import boto3
import pytest

from mailroom.adapters.results import ERASED_ADDRESS, CampaignResults
from mailroom.logic.audience import parse_csv, to_csv
from mailroom.models import Page, Recipient, Subscriber
from mailroom.worker import Budget
from mailroom_local.template import Stack
from tests.campaigns import Campaigns, Loader, api_event, put_subscribers, records
from tests.support import REGION, load_event, queue_messages, sent_mails, sqs_event

HEADER = "email,name\r\n"


@pytest.fixture
def campaigns(stack: Stack, load_function: Loader) -> Campaigns:
    return Campaigns(stack, load_function, env={"FANOUT_PAGE_SIZE": "10", "RECIPIENTS_PER_TASK": "4"})


def call(
    campaigns: Campaigns,
    method: str,
    path: str,
    body: str | None = None,
    query: dict[str, str] | None = None,
    content_type: str = "text/csv",
    base64_body: bool = False,
) -> dict[str, Any]:
    event = api_event(method, path, body, query)
    event["headers"] = {**event["headers"], "Content-Type": content_type}
    event["multiValueHeaders"] = {**event["multiValueHeaders"], "Content-Type": [content_type]}
    event["isBase64Encoded"] = base64_body
    response: dict[str, Any] = campaigns.app("AdminFunction").lambda_handler(event, campaigns.context)
    return response


def json_call(campaigns: Campaigns, *args: Any, **kwargs: Any) -> tuple[int, Any]:
    response = call(campaigns, *args, **kwargs)
    return response["statusCode"], json.loads(response["body"])


def import_csv(campaigns: Campaigns, text: str, confirmed: bool | None = None) -> tuple[int, Any]:
    query = None if confirmed is None else {"confirmed": str(confirmed).lower()}
    return json_call(campaigns, "POST", "/admin/subscribers/import", text, query)


def table_items(stack: Stack, logical_id: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.physical_name(logical_id))
    return list(table.scan(ConsistentRead=True)["Items"])


def subscriber(stack: Stack, email: str) -> Subscriber | None:
    for item in table_items(stack, "SubscribersTable"):
        if item["email"] == email:
            return Subscriber.model_validate(item)
    return None


def everything_stored(stack: Stack) -> str:
    """Every item of every table, every attribute, checkpoints decompressed, as one text."""
    client = boto3.client("dynamodb", region_name=REGION)
    texts = []
    for name in client.list_tables()["TableNames"]:
        for page in client.get_paginator("scan").paginate(TableName=name, ConsistentRead=True):
            for item in page["Items"]:
                for value in item.values():
                    if "B" in value:
                        texts.append(zlib.decompress(value["B"]).decode())
                    else:
                        texts.append(json.dumps(value))
    return "\n".join(texts).lower()


# -- import -------------------------------------------------------------------------------------
def test_a_confirmed_import_validates_deduplicates_and_never_overwrites(stack: Stack, campaigns: Campaigns) -> None:
    put_subscribers(stack, 1)  # r0@example.com exists
    text = (
        "\ufeffEmail,Name,Company\r\n"
        "Ada@Example.com,Ada Lovelace,Analytical\r\n"
        "\r\n"
        "not-an-address,Bob,\r\n"
        "ada@example.com,Ada Again,\r\n"
        "r0@example.com,Existing,\r\n"
        ",No Address,\r\n"
        'carol@example.com,"Carol\x07",\r\n'
        f"dave@example.com,{'d' * 101},\r\n"
        "eve@example.com\r\n"
        "'=frank@example.com,'=Frank,\r\n"
    )
    status, report = import_csv(campaigns, text, confirmed=True)
    assert status == 200, report
    assert report["imported"] == 3 and report["confirmed"] is True and report["rows"] == 9
    assert [(r["row"], r["reason"].split(":")[0]) for r in report["rejected"]] == [
        (4, "email"),
        (7, "email is missing"),
        (8, "name"),
        (9, "name"),
    ]
    assert report["duplicates"] == [{"row": 5, "email": "ada@example.com", "first_row": 2}]
    assert report["existing"] == [{"row": 6, "email": "r0@example.com"}]
    assert report["failed"] == []
    ada = subscriber(stack, "ada@example.com")
    assert ada is not None and ada.name == "Ada Lovelace" and ada.status == "subscribed"
    assert ada.source == "import" and ada.confirmed_at and ada.welcome_queued and ada.expires_at is None
    frank = subscriber(stack, "=frank@example.com")  # an export's defused cell reads back as it was
    assert frank is not None and frank.name == "=Frank"
    existing = subscriber(stack, "r0@example.com")
    assert existing is not None and existing.name == "Reader 0"  # not overwritten
    assert queue_messages(stack, "WelcomeQueue") == []  # an imported list gets no welcome mail


def test_an_unconfirmed_import_creates_pending_subscribers_and_queues_their_confirmation(
    stack: Stack, campaigns: Campaigns
) -> None:
    text = HEADER + "".join(f"p{i}@example.com,Person {i}\r\n" for i in range(12))
    status, report = import_csv(campaigns, text)
    assert status == 200 and report["imported"] == 12 and report["confirmed"] is False
    tasks = queue_messages(stack, "WelcomeQueue")
    assert sorted(t["email"] for t in tasks) == sorted(f"p{i}@example.com" for i in range(12))
    assert {(t["kind"], t["seq"]) for t in tasks} == {("confirmation", 1)}
    item = next(i for i in table_items(stack, "SubscribersTable") if i["email"] == "p3@example.com")
    assert item["status"] == "pending" and item["source"] == "import" and item["confirmations"] == 1
    assert item["confirmations_queued"] == 1 and item["expires_at"] > 0 and item["confirmation_sent_at"]
    assert {t["subscriber_id"] for t in tasks if t["email"] == "p3@example.com"} == {item["id"]}


class RunsOutAfter:
    """A time budget that is spent after ``rows`` checks (one per row started)."""

    def __init__(self, rows: int) -> None:
        self.left = rows
        self.lock = threading.Lock()

    def expired(self) -> bool:
        with self.lock:
            self.left -= 1
            return self.left < 0


def test_an_import_stops_before_its_time_runs_out_and_a_second_one_finishes_it(
    stack: Stack, campaigns: Campaigns
) -> None:
    text = HEADER + "".join(f"t{i}@example.com,\r\n" for i in range(12))
    with mock.patch.object(Budget, "of", return_value=RunsOutAfter(5)):
        status, report = import_csv(campaigns, text)
    assert status == 200 and report["imported"] == 5 and report["complete"] is False
    assert len(report["not_attempted"]) == 7 and report["existing"] == [] and report["failed"] == []
    first = queue_messages(stack, "WelcomeQueue")  # what was written got its confirmation
    assert len(first) == 5
    stored = {i["email"]: i for i in table_items(stack, "SubscribersTable")}
    assert set(stored) == {t["email"] for t in first}
    assert all(i["confirmations_queued"] == 1 for i in stored.values())
    assert not set(stored) & {entry["email"] for entry in report["not_attempted"]}
    assert sorted(e["row"] for e in report["not_attempted"]) == sorted(
        int(r) for r in range(2, 14) if f"t{r - 2}@example.com" not in stored
    )

    status, again = import_csv(campaigns, text)
    assert status == 200 and again["imported"] == 7 and again["complete"] is True and again["not_attempted"] == []
    assert len(again["existing"]) == 5 and again["resumed"] == []
    second = queue_messages(stack, "WelcomeQueue")
    assert sorted(t["email"] for t in first + second) == sorted(f"t{i}@example.com" for i in range(12))


def test_a_second_import_queues_the_confirmations_an_interrupted_one_never_queued(
    stack: Stack, campaigns: Campaigns
) -> None:
    app = campaigns.app("AdminFunction")
    text = HEADER + "".join(f"k{i}@example.com,Kay {i}\r\n" for i in range(3))
    # Killed (timeout) after the writes, before the confirmations were queued.
    with mock.patch("mailroom.logic.audience._queue_confirmations"):
        assert import_csv(campaigns, text)[0] == 200
    assert queue_messages(stack, "WelcomeQueue") == []
    assert {i["confirmations_queued"] for i in table_items(stack, "SubscribersTable")} == {0}
    # A sign-up's pending confirmation is the registration's business: not resumed.
    boto3.resource("dynamodb", region_name=REGION).Table(stack.physical_name("SubscribersTable")).put_item(
        Item={
            "email": "signup@example.com",
            "id": "id-signup",
            "status": "pending",
            "source": "signup",
            "created_at": "2026-11-28T09:00:00.000Z",
            "confirmations": 1,
            "confirmations_queued": 0,
        }
    )
    text += "signup@example.com,\r\n"

    status, report = import_csv(campaigns, text, confirmed=False)
    assert status == 200 and report["imported"] == 0
    assert report["resumed"] == [{"row": r, "email": f"k{r - 2}@example.com", "seq": 1} for r in (2, 3, 4)]
    assert report["existing"] == [{"row": 5, "email": "signup@example.com"}]
    tasks = queue_messages(stack, "WelcomeQueue")
    assert sorted((t["email"], t["kind"], t["seq"]) for t in tasks) == [
        (f"k{i}@example.com", "confirmation", 1) for i in range(3)
    ]
    items = {i["email"]: i for i in table_items(stack, "SubscribersTable")}
    assert all(items[f"k{i}@example.com"]["confirmations_queued"] == 1 for i in range(3))
    assert items["signup@example.com"]["confirmations_queued"] == 0
    assert {t["subscriber_id"] for t in tasks} == {items[f"k{i}@example.com"]["id"] for i in range(3)}

    # Once queued, a third import resumes nothing; a task queued twice mails once (the ledger).
    status, third = import_csv(campaigns, text, confirmed=False)
    assert third["resumed"] == [] and len(third["existing"]) == 4
    worker = campaigns.app("WelcomeWorkerFunction")
    for batch in (tasks, tasks):
        worker.lambda_handler(sqs_event(stack, "WelcomeQueue", batch), campaigns.context)
    to = sorted(address for mail in sent_mails() for address in mail.to)
    assert to == [f"k{i}@example.com" for i in range(3)]
    assert app.IMPORT_MARGIN_MS > 0


def test_rows_whose_confirmation_cannot_be_queued_are_not_imported(stack: Stack, campaigns: Campaigns) -> None:
    app = campaigns.app("AdminFunction")
    real = app.welcome_queue.send_batch
    calls = {"n": 0}

    def second_batch_fails(bodies: list[str], attributes: Any = None) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("SQS is down")
        return int(real(bodies, attributes))

    text = HEADER + "".join(f"q{i}@example.com,\r\n" for i in range(25))
    with mock.patch.object(app.welcome_queue, "send_batch", side_effect=second_batch_fails):
        status, report = import_csv(campaigns, text, confirmed=False)
    assert status == 200 and report["imported"] == 15
    assert [f["row"] for f in report["failed"]] == list(range(12, 22))
    stored = {i["email"] for i in table_items(stack, "SubscribersTable")}
    assert stored == {f"q{i}@example.com" for i in (*range(10), *range(20, 25))}  # nothing half-written
    assert len(queue_messages(stack, "WelcomeQueue")) == 15


@pytest.mark.parametrize(
    ("body", "kwargs", "status", "code"),
    [
        ('{"email": "a@example.com"}', {"content_type": "application/json"}, 415, "unsupported_media_type"),
        (HEADER, {"content_type": "text/csv; charset=iso-8859-1"}, 415, "unsupported_media_type"),
        ("email\r\n" + "a@example.com\r\n" * 80_000, {}, 413, "body_too_large"),
        ("", {}, 400, "empty_file"),
        ("address,name\r\na@example.com,A\r\n", {}, 400, "missing_column"),
        ("email,email\r\na@example.com,b@example.com\r\n", {}, 400, "duplicate_column"),
        ("email\r\n" + "".join(f"a{i}@example.com\r\n" for i in range(5_001)), {}, 400, "too_many_rows"),
        (
            base64.b64encode(b"email\r\n\xff\xfe@example.com\r\n").decode(),
            {"base64_body": True},
            400,
            "invalid_encoding",
        ),
    ],
)
def test_a_file_that_cannot_be_imported_is_a_4xx_naming_the_problem(
    stack: Stack, campaigns: Campaigns, body: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    answer, error = json_call(campaigns, "POST", "/admin/subscribers/import", body, **kwargs)
    assert (answer, error["error"]["code"]) == (status, code), error
    assert table_items(stack, "SubscribersTable") == []


def test_the_confirmed_flag_must_be_true_or_false(campaigns: Campaigns) -> None:
    status, error = json_call(campaigns, "POST", "/admin/subscribers/import", HEADER, {"confirmed": "yes"})
    assert status == 400 and error["error"]["field"] == "confirmed"


def test_an_unreadable_csv_line_is_a_400() -> None:
    from mailroom.logic.audience import ImportRejected

    with pytest.raises(ImportRejected, match="line"):
        parse_csv("email\n" + '"' + "x" * 200_000 + '"\n')


# -- listing, search, one subscriber --------------------------------------------------------------
def test_listing_pages_through_everyone_once_and_searches_any_case(stack: Stack, campaigns: Campaigns) -> None:
    put_subscribers(stack, 7, unsubscribed_every=3)  # r0, r3, r6 unsubscribed
    seen: list[str] = []
    cursor: str | None = None
    while True:
        status, page = json_call(
            campaigns, "GET", "/admin/subscribers", query={"limit": "2"} | ({"cursor": cursor} if cursor else {})
        )
        assert status == 200 and len(page["items"]) <= 2
        seen += [item["email"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(f"r{i}@example.com" for i in range(7))
    status, page = json_call(campaigns, "GET", "/admin/subscribers", query={"q": "READER 4"})
    assert [item["email"] for item in page["items"]] == ["r4@example.com"]
    assert set(page["items"][0]) >= {"id", "email", "name", "status", "source", "created_at"}
    assert "expires_at" not in page["items"][0] and "welcome_queued" not in page["items"][0]
    status, page = json_call(campaigns, "GET", "/admin/subscribers", query={"q": "R5@EXAMPLE"})
    assert [item["email"] for item in page["items"]] == ["r5@example.com"]
    status, page = json_call(campaigns, "GET", "/admin/subscribers", query={"status": "unsubscribed"})
    assert sorted(item["email"] for item in page["items"]) == ["r0@example.com", "r3@example.com", "r6@example.com"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "eyJpZCI6eyJTIjoieCJ9fQ"}, "cursor"),  # a campaigns cursor, not ours
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"status": "happy"}, "status"),
        ({"q": "x" * 255}, "q"),
    ],
)
def test_a_bad_listing_query_is_a_400(campaigns: Campaigns, query: dict[str, str], field: str) -> None:
    status, error = json_call(campaigns, "GET", "/admin/subscribers", query=query)
    assert status == 400 and error["error"]["field"] == field, error


def test_one_subscriber_by_id(stack: Stack, campaigns: Campaigns) -> None:
    put_subscribers(stack, 2)
    status, body = json_call(campaigns, "GET", "/admin/subscribers/id-1")
    assert status == 200 and body["email"] == "r1@example.com" and body["id"] == "id-1"
    status, body = json_call(campaigns, "GET", "/admin/subscribers/id-9")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = json_call(campaigns, "GET", "/admin/subscribers/bad%20id!")
    assert status == 400 and body["error"]["code"] == "invalid_path"


# -- export -----------------------------------------------------------------------------------------
def test_the_export_is_paged_csv_with_formulas_defused(stack: Stack, campaigns: Campaigns) -> None:
    put_subscribers(stack, 5)
    import_csv(campaigns, HEADER + 'mallory@example.com,=HYPERLINK("http://evil")\r\n', confirmed=True)
    app = campaigns.app("AdminFunction")
    rows: list[dict[str, str]] = []
    query: dict[str, str] = {"status": "subscribed"}
    pages = 0
    with mock.patch.object(app, "EXPORT_ROWS", 2):
        while True:
            response = call(campaigns, "GET", "/admin/subscribers/export", query=query)
            pages += 1
            headers = response.get("multiValueHeaders") or {}
            flat = {k.lower(): (v[0] if isinstance(v, list) else v) for k, v in headers.items()} | {
                k.lower(): v for k, v in (response.get("headers") or {}).items()
            }
            assert response["statusCode"] == 200 and flat["content-type"].startswith("text/csv")
            assert flat["content-disposition"].startswith("attachment")
            rows += list(csv.DictReader(io.StringIO(response["body"])))
            cursor = flat.get("x-next-cursor")
            if not cursor:
                break
            assert flat["link"] == f'<?status=subscribed&cursor={cursor}>; rel="next"'
            query = {"status": "subscribed", "cursor": cursor}
    assert pages == 3 and len(rows) == 6
    assert list(rows[0]) == [
        "id",
        "email",
        "name",
        "status",
        "source",
        "created_at",
        "confirmed_at",
        "unsubscribed_at",
        "suppressed_at",
    ]
    mallory = next(row for row in rows if row["email"] == "mallory@example.com")
    assert mallory["name"] == '\'=HYPERLINK("http://evil")' and mallory["source"] == "import"
    # and the export imports again as it was
    parsed = parse_csv(to_csv([Subscriber.model_validate(i) for i in table_items(stack, "SubscribersTable")]))
    assert {row.name for row in parsed.rows if row.email == "mallory@example.com"} == {'=HYPERLINK("http://evil")'}


# -- fan-out checkpoints ---------------------------------------------------------------------------
def test_a_retired_checkpoint_replays_an_empty_page_and_is_never_scanned_again(stack: Stack) -> None:
    results = CampaignResults(stack.physical_name("ResultsTable"), stack.physical_name("CampaignsTable"))
    page = Page([Recipient(id="a", email="a@example.com", name="A")], "a@example.com")
    assert results.checkpoint("c1", 0, 0, lambda: page, 0) == (page, False)
    results.retire_checkpoint("c1", 0, 0)
    results.retire_checkpoint("c1", 0, 0)  # repeated: harmless

    def must_not_scan() -> Page:
        raise AssertionError("a retired page was scanned again")

    assert results.checkpoint("c1", 0, 0, must_not_scan, 0) == (Page([], None), True)
    assert "a@example.com" not in everything_stored(stack)


def test_a_fan_out_leaves_no_addresses_in_its_checkpoints(stack: Stack, campaigns: Campaigns) -> None:
    put_subscribers(stack, 25)
    campaign = campaigns.create()
    campaigns.send(campaign["id"])
    campaigns.run_fanout()
    checkpoints = [i for i in table_items(stack, "ResultsTable") if i["pk"].startswith("fanout#")]
    assert checkpoints and all("data" not in i and i["retired"] for i in checkpoints)


# -- erasure ---------------------------------------------------------------------------------------
def test_erasure_leaves_no_personal_data_and_the_counters_as_they_were(stack: Stack, campaigns: Campaigns) -> None:
    status, _ = import_csv(campaigns, HEADER + "ada@example.com,Ada Lovelace\r\nbob@example.com,Bob\r\n", True)
    ada = subscriber(stack, "ada@example.com")
    assert ada is not None
    campaign = campaigns.create()
    campaigns.send(campaign["id"])
    campaigns.run_fanout()
    campaigns.run_workers()
    before = campaigns.get(campaign["id"])
    assert before["status"] == "sent" and before["counters"]["sent"] == 2
    # a welcome and two confirmation records, and a checkpoint still in flight, name her too
    results = boto3.resource("dynamodb", region_name=REGION).Table(stack.physical_name("ResultsTable"))
    for pk, sk in (("welcome", ada.id), ("confirmation", f"{ada.id}#1"), ("confirmation", f"{ada.id}#2")):
        results.put_item(Item={"pk": pk, "sk": sk, "status": "sent", "email": ada.email, "message_id": "m-1"})
    store = CampaignResults(stack.physical_name("ResultsTable"), stack.physical_name("CampaignsTable"))
    in_flight = Page([Recipient(id=ada.id, email=ada.email, name=ada.name)], None)
    store.checkpoint("other", 0, 3, lambda: in_flight, 0)
    boto3.resource("dynamodb", region_name=REGION).Table(stack.physical_name("CampaignsTable")).put_item(
        Item={
            "id": "other",
            "kind": "campaign",
            "status": "sending",
            "created_at": "2099-01-01T00:00:00.000Z",
            "started_at": "2099-01-01T00:00:00.000Z",
            "subject": "s",
            "content": "c",
            "format": "markdown",
            "updated_at": "2099-01-01T00:00:00.000Z",
        }
    )
    assert "ada lovelace" in everything_stored(stack)

    status, body = json_call(campaigns, "DELETE", f"/admin/subscribers/{ada.id}")
    assert status == 200, body
    assert body == {
        "erased": True,
        "subscriber_id": ada.id,
        "subscriber_deleted": True,
        "records_scrubbed": 4,
        "checkpoints_rewritten": 1,
        "fanout_positions": 0,
        "fanout_positions_removed": 0,
    }
    stored = everything_stored(stack)
    assert "ada@example.com" not in stored and "ada lovelace" not in stored
    assert "bob@example.com" in stored  # the others stay
    after = campaigns.get(campaign["id"])
    assert after["counters"] == before["counters"] and after["feedback"] == before["feedback"]
    assert records(stack, campaign["id"])[ada.id]["status"] == "sent"  # anonymous, still counted
    assert store.checkpoint("other", 0, 3, lambda: in_flight, 0)[0].recipients == [
        Recipient(id=ada.id, email=ERASED_ADDRESS)
    ]
    # a second erasure finds nothing left; an unknown id is a 404 too
    assert json_call(campaigns, "DELETE", f"/admin/subscribers/{ada.id}")[0] == 404
    assert json_call(campaigns, "DELETE", "/admin/subscribers/nobody")[0] == 404
    assert json_call(campaigns, "GET", f"/admin/subscribers/{ada.id}")[0] == 404


def test_an_erased_recipient_of_a_page_in_flight_is_skipped_and_the_campaign_completes(
    stack: Stack, campaigns: Campaigns
) -> None:
    put_subscribers(stack, 6)
    campaign = campaigns.create()
    campaigns.send(campaign["id"])
    fanout = campaigns.app("FanoutFunction")
    steps = queue_messages(stack, "FanoutQueue")
    # every step dies after queueing its page's tasks, before moving the position on
    with mock.patch.object(fanout.campaigns, "advance", side_effect=RuntimeError("Lambda died")):
        for step in steps:
            fanout.lambda_handler(sqs_event(stack, "FanoutQueue", [step]), campaigns.context)
    first_tasks = queue_messages(stack, "NewsletterQueue")
    victim = first_tasks[0]["recipients"][0]
    status, body = json_call(campaigns, "DELETE", f"/admin/subscribers/{victim['id']}")
    assert status == 200 and body["checkpoints_rewritten"] == 1 and body["subscriber_deleted"]
    assert victim["email"] not in everything_stored(stack)
    # the steps are redelivered: they replay the same pages and tasks, the victim anonymous
    for step in steps:
        fanout.lambda_handler(sqs_event(stack, "FanoutQueue", [step]), campaigns.context)
    campaigns.run_fanout()
    replayed = queue_messages(stack, "NewsletterQueue")
    assert sorted(t["task"] for t in replayed) == sorted(t["task"] for t in first_tasks)
    assert {"id": victim["id"], "email": ERASED_ADDRESS} in [r for t in replayed for r in t["recipients"]]
    worker = campaigns.app("NewsletterWorkerFunction")
    for task in first_tasks + replayed:  # the first attempt's tasks still carry the address
        worker.lambda_handler(sqs_event(stack, "NewsletterQueue", [task]), campaigns.context)
    final = campaigns.get(campaign["id"])
    assert final["status"] == "sent" and final["counters"]["recipients"] == 6
    assert final["counters"]["sent"] == 5 and final["counters"]["skipped"] == 1
    assert victim["email"] not in {address for mail in sent_mails() for address in mail.to}
    # A task queued before the erasure carried the address: the worker finds the subscriber
    # gone and writes its skip record without it.
    assert records(stack, campaign["id"])[victim["id"]]["status"] == "skipped"
    assert "email" not in records(stack, campaign["id"])[victim["id"]]
    assert victim["email"] not in everything_stored(stack)
    assert campaigns.get(campaign["id"])["counters"] == final["counters"]


def progress_item(stack: Stack, campaign_id: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.physical_name("CampaignsTable"))
    return dict(table.get_item(Key={"id": f"{campaign_id}#progress"}, ConsistentRead=True)["Item"])


def set_position(stack: Stack, campaign_id: str, email: str, segment: int = 0) -> None:
    """The segment's scan position, as ``advance`` leaves it after a page ending at ``email``."""
    boto3.resource("dynamodb", region_name=REGION).Table(stack.physical_name("CampaignsTable")).update_item(
        Key={"id": f"{campaign_id}#progress"},
        UpdateExpression="SET #c = :email",
        ExpressionAttributeNames={"#c": f"seg{segment}_cursor"},
        ExpressionAttributeValues={":email": email},
    )


def test_a_cancelled_fan_out_keeps_no_address_and_erasure_removes_what_an_older_cancel_left(
    stack: Stack, campaigns: Campaigns
) -> None:
    put_subscribers(stack, 3)
    victim = "r1@example.com"
    running, cancelled, legacy = (campaigns.create() for _ in range(3))
    for campaign in (running, cancelled, legacy):
        campaigns.send(campaign["id"])  # its fan-out steps stay queued: nobody runs them here
        set_position(stack, campaign["id"], victim)
    # A cancel drops the positions with the state: that fan-out never moves again.
    assert campaigns.call("POST", f"/admin/campaigns/{cancelled['id']}/cancel")[0] == 200
    assert not [key for key in progress_item(stack, cancelled["id"]) if key.endswith("_cursor")]
    assert campaigns.call("POST", f"/admin/campaigns/{legacy['id']}/cancel")[0] == 200
    set_position(stack, legacy["id"], victim)  # what a cancel before this change left behind
    set_position(stack, legacy["id"], "r2@example.com", segment=1)

    status, body = json_call(campaigns, "DELETE", "/admin/subscribers/id-1")
    assert status == 200, body
    assert (body["fanout_positions"], body["fanout_positions_removed"]) == (1, 1)
    assert "seg0_cursor" not in progress_item(stack, legacy["id"])
    assert progress_item(stack, legacy["id"])["seg1_cursor"] == "r2@example.com"  # not hers: stays
    assert progress_item(stack, running["id"])["seg0_cursor"] == victim  # its scan goes on from there
    stored = everything_stored(stack)
    assert stored.count(victim) == 1  # only on the position of the fan-out still running

    # The cancelled fan-outs' steps stop at once; the running one goes on past her.
    campaigns.run_fanout()
    assert campaigns.get(cancelled["id"])["status"] == "cancelled"
    assert victim not in everything_stored(stack)


def test_a_repeated_ses_event_after_an_erasure_is_not_counted_again(stack: Stack, campaigns: Campaigns) -> None:
    bounce = load_event("ses_events_bounce.json")
    mail = bounce["detail"]["mail"]
    campaign_id, subscriber_id = mail["tags"]["campaign"][0], mail["tags"]["subscriber"][0]
    delivery = load_event("ses_events_delivery.json")
    delivery["detail"]["mail"] = copy.deepcopy(mail)  # the same mail: delivered, then bounced
    dynamodb = boto3.resource("dynamodb", region_name=REGION)
    stamp = "2026-11-28T09:00:00.000Z"
    dynamodb.Table(stack.physical_name("CampaignsTable")).put_item(
        Item={"id": campaign_id, "kind": "campaign", "status": "sent", "created_at": stamp, "started_at": stamp}
    )
    dynamodb.Table(stack.physical_name("CampaignsTable")).put_item(
        Item={"id": f"{campaign_id}#progress", "state": "sent", "sent": 1}
    )
    dynamodb.Table(stack.physical_name("SubscribersTable")).put_item(
        Item={"email": mail["destination"][0], "id": subscriber_id, "status": "subscribed", "created_at": stamp}
    )
    dynamodb.Table(stack.physical_name("ResultsTable")).put_item(
        Item={
            "pk": f"campaign#{campaign_id}",
            "sk": subscriber_id,
            "status": "sent",
            "email": mail["destination"][0],
            "message_id": mail["messageId"],
        }
    )
    ses = campaigns.app("SesEventsFunction")

    def counters() -> dict[str, int]:
        item = progress_item(stack, campaign_id)
        return {name: int(item.get(name, 0)) for name in ("delivered", "bounced", "complained")}

    batch = sqs_event(stack, "SesEventsQueue", [delivery, bounce])  # one batch from SesEventsQueue
    assert ses.lambda_handler(copy.deepcopy(batch), campaigns.context) == {"batchItemFailures": []}
    assert counters() == {"delivered": 1, "bounced": 1, "complained": 0}

    status, body = json_call(campaigns, "DELETE", f"/admin/subscribers/{subscriber_id}")
    assert status == 200 and body["records_scrubbed"] == 1, body
    (record,) = records(stack, campaign_id).values()
    assert "email" not in record and "message_id" not in record and record["erased_at"]
    assert record["bounce_type"] == "Permanent" and record["delivered_at"] and record["bounced_at"]

    # EventBridge delivers them again: duplicates, counted nothing
    assert ses.lambda_handler(copy.deepcopy(batch), campaigns.context) == {"batchItemFailures": []}
    assert counters() == {"delivered": 1, "bounced": 1, "complained": 0}
    assert mail["destination"][0] not in everything_stored(stack)


def test_a_checkpoint_of_a_cancelled_campaign_whose_position_is_the_address_is_retired(
    stack: Stack, campaigns: Campaigns
) -> None:
    """A page in flight when its campaign was cancelled may end at the erased address (its
    ``next``, the scan position): a fan-out that can never step again needs none of it."""
    put_subscribers(stack, 3)
    victim = Recipient(id="id-1", email="r1@example.com", name="Reader 1")
    other = Recipient(id="id-2", email="r2@example.com", name="Reader 2")
    campaign = campaigns.create()
    campaigns.send(campaign["id"])
    store = CampaignResults(stack.physical_name("ResultsTable"), stack.physical_name("CampaignsTable"))
    store.checkpoint(campaign["id"], 0, 1, lambda: Page([other, victim], victim.email), 0)
    assert campaigns.call("POST", f"/admin/campaigns/{campaign['id']}/cancel")[0] == 200
    assert victim.email in everything_stored(stack)

    status, body = json_call(campaigns, "DELETE", "/admin/subscribers/id-1")
    assert status == 200 and body["checkpoints_rewritten"] == 1, body
    assert victim.email not in everything_stored(stack) and "Reader 1" not in everything_stored(stack)
