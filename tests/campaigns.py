"""Driving campaigns through the real handlers under moto: admin API calls, fan-out steps, workers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3

from mailroom_local.template import Stack
from tests.conftest import LambdaContext
from tests.support import REGION, load_event, queue_messages, sent_mails, sqs_event

Loader = Callable[..., ModuleType]


def api_event(method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway proxy event (REST, v1) for the admin API, built from the sample event."""
    event = load_event("admin_create_campaign.json")
    event.update(
        {
            "httpMethod": method,
            "path": path,
            "resource": path,
            "body": body if isinstance(body, str) or body is None else json.dumps(body),
            "queryStringParameters": query,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        }
    )
    event["requestContext"] = {**event["requestContext"], "httpMethod": method, "path": f"/dev{path}"}
    return event


def put_subscribers(stack: Stack, count: int, unsubscribed_every: int = 0, start: int = 0) -> list[str]:
    """Subscribers r<i>@example.com with ids id-<i>; returns the addresses of the subscribed ones."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    table = stack.physical_name("SubscribersTable")
    subscribed: list[str] = []
    requests: list[dict[str, Any]] = []
    for index in range(start, start + count):
        out = bool(unsubscribed_every) and index % unsubscribed_every == 0
        email = f"r{index}@example.com"
        requests.append(
            {
                "PutRequest": {
                    "Item": {
                        "email": {"S": email},
                        "id": {"S": f"id-{index}"},
                        "name": {"S": f"Reader {index}"},
                        "status": {"S": "unsubscribed" if out else "subscribed"},
                        "created_at": {"S": "2026-11-28T09:00:00.000Z"},
                    }
                }
            }
        )
        if not out:
            subscribed.append(email)
    for offset in range(0, len(requests), 25):
        dynamodb.batch_write_item(RequestItems={table: requests[offset : offset + 25]})
    return subscribed


def set_status(stack: Stack, email: str, status: str) -> None:
    boto3.client("dynamodb", region_name=REGION).update_item(
        TableName=stack.physical_name("SubscribersTable"),
        Key={"email": {"S": email}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": status}},
    )


def records_of(stack: Stack, pk: str) -> list[dict[str, Any]]:
    """The result records under one key (e.g. "welcome" or "campaign#<id>"), plain values."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    found: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("query").paginate(
        TableName=stack.physical_name("ResultsTable"),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
    ):
        found += [{key: next(iter(value.values())) for key, value in item.items()} for item in page["Items"]]
    return found


def records(stack: Stack, campaign_id: str) -> dict[str, dict[str, Any]]:
    """The result records of a campaign by subscriber id (plain values)."""
    return {record["sk"]: record for record in records_of(stack, f"campaign#{campaign_id}")}


def mails_per_address() -> Counter[str]:
    return Counter(address for mail in sent_mails() for address in mail.to)


@dataclass
class Campaigns:
    """The admin, fan-out, dispatcher and worker handlers of one moto stack."""

    stack: Stack
    load_function: Loader
    context: LambdaContext = field(default_factory=LambdaContext)
    env: dict[str, str] = field(default_factory=dict)
    _apps: dict[str, ModuleType] = field(default_factory=dict)

    def app(self, logical_id: str) -> ModuleType:
        if logical_id not in self._apps:
            self._apps[logical_id] = self.load_function(logical_id, **self.env)
        return self._apps[logical_id]

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> tuple[int, Any]:
        response = self.app("AdminFunction").lambda_handler(api_event(method, path, body, query), self.context)
        return response["statusCode"], json.loads(response["body"])

    def create(self, **fields: Any) -> dict[str, Any]:
        status, body = self.call(
            "POST", "/admin/campaigns", {"subject": "News", "content": "Hello {{ name }}"} | fields
        )
        assert status == 201, body
        return dict(body)

    def get(self, campaign_id: str) -> dict[str, Any]:
        status, body = self.call("GET", f"/admin/campaigns/{campaign_id}")
        assert status == 200, body
        return dict(body)

    def send(self, campaign_id: str) -> dict[str, Any]:
        status, body = self.call("POST", f"/admin/campaigns/{campaign_id}/send")
        assert status == 202, body
        return dict(body)

    def run_fanout(self, max_rounds: int = 1000) -> int:
        """Run fan-out steps until the fan-out queue is empty; returns the steps run."""
        app = self.app("FanoutFunction")
        steps = 0
        for _ in range(max_rounds):
            messages = queue_messages(self.stack, "FanoutQueue")
            if not messages:
                return steps
            for message in messages:
                response = app.lambda_handler(sqs_event(self.stack, "FanoutQueue", [message]), self.context)
                assert response == {"batchItemFailures": []}
                steps += 1
        raise AssertionError("the fan-out did not end")

    def run_workers(self, batch_size: int = 5) -> list[dict[str, Any]]:
        """Deliver every queued task to the worker, ``batch_size`` per invocation; the responses."""
        app = self.app("NewsletterWorkerFunction")
        responses = []
        tasks = queue_messages(self.stack, "NewsletterQueue")
        for start in range(0, len(tasks), batch_size):
            event = sqs_event(self.stack, "NewsletterQueue", tasks[start : start + batch_size])
            responses.append(app.lambda_handler(event, self.context))
        return responses


def assert_counters_match_records(stack: Stack, campaign: dict[str, Any]) -> Counter[str]:
    """The campaign's counters equal a count of its records; returns the record statuses."""
    statuses = Counter(record["status"] for record in records(stack, campaign["id"]).values())
    counters = campaign["counters"]
    for status in ("sent", "failed", "skipped", "uncertain"):
        assert counters[status] == statuses[status], (status, counters, statuses)
    resolved = sum(statuses[s] for s in ("sent", "failed", "skipped", "uncertain"))
    assert counters["queued"] == counters["recipients"] - resolved
    return statuses
