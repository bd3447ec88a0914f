"""Least privilege that is also enough: every AWS call a handler makes is allowed by its template policy.

moto does not enforce IAM, so a missing action would only show after a deploy, as an
AccessDenied. This test drives every function through its paths (under moto), records
each AWS request with the function that made it, and checks the request against that
function's `Policies` in template.yaml (actions and resources, wildcards as IAM matches them).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.client import BaseClient

from mailroom.links import CONFIRM, UNSUBSCRIBE
from mailroom_local.template import Stack
from tests.campaigns import Campaigns, Loader, api_event, put_subscribers, records, set_status
from tests.support import ACCOUNT, REGION, link_tokens, load_event, queue_messages, sqs_event

_current: list[str] = []  # the function being invoked (worker threads read it too)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, dict[str, Any]]] = []

    def __call__(self, client: BaseClient, operation: str, params: dict[str, Any]) -> None:
        if _current:
            self.calls.append((_current[-1], client.meta.service_model.service_name, operation, params))


@contextmanager
def invoking(function: str) -> Iterator[None]:
    _current.append(function)
    try:
        yield
    finally:
        _current.pop()


class Traced:
    """A loaded function whose lambda_handler records the AWS calls it makes as that function."""

    def __init__(self, module: ModuleType, function: str) -> None:
        self._module = module
        self._function = function

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def lambda_handler(self, event: Any, context: Any) -> Any:
        with invoking(self._function):
            return self._module.lambda_handler(event, context)


class TracedCampaigns(Campaigns):
    def app(self, logical_id: str) -> Any:
        return Traced(super().app(logical_id), logical_id)


def table_arn(name: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


def needed(service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """The (action, resource) pairs IAM checks for one request."""
    if service == "dynamodb":
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [(f"dynamodb:{operation}", table_arn(table)) for table in params["RequestItems"]]
        if operation == "TransactWriteItems":
            kinds = {
                "Put": "PutItem",
                "Update": "UpdateItem",
                "Delete": "DeleteItem",
                "ConditionCheck": "ConditionCheckItem",
            }
            pairs = []
            for item in params["TransactItems"]:
                ((kind, op),) = item.items()
                pairs.append((f"dynamodb:{kinds[kind]}", table_arn(op["TableName"])))
            return pairs
        resource = table_arn(params["TableName"])
        if params.get("IndexName"):
            resource += f"/index/{params['IndexName']}"
        return [(f"dynamodb:{operation}", resource)]
    if service == "sqs":
        queue = params["QueueUrl"].rstrip("/").rpartition("/")[2]
        # IAM authorizes a batch call with its single action (sqs:SendMessage for SendMessageBatch, ...)
        action = f"sqs:{operation.removesuffix('Batch')}"
        return [(action, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}")]
    if service == "sesv2":
        if operation == "SendEmail":
            sender = params["FromEmailAddress"]
            pairs = [("ses:SendEmail", f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/{sender}")]
            if params.get("ConfigurationSetName"):  # SES authorizes the configuration set too
                configuration_set = params["ConfigurationSetName"]
                pairs.append(("ses:SendEmail", f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/{configuration_set}"))
            return pairs
        return [(f"ses:{operation}", "*")]
    if service == "secretsmanager":
        # locally the secret's Ref (and so the policy's resource) is its name, which the functions get
        return [(f"secretsmanager:{operation}", params["SecretId"])]
    if service == "ssm":
        # a parameter's ARN names it without its leading slash: /stack/public-url -> parameter/stack/public-url
        return [(f"ssm:{operation}", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{params['Name'].lstrip('/')}")]
    if service == "cloudwatch" and operation == "GetMetricData":
        return [("cloudwatch:GetMetricData", "*")]  # no resource-level permission
    if service == "cognito-idp" and operation in ("InitiateAuth", "RespondToAuthChallenge"):
        return []  # a public client's sign-in: Cognito authorizes it with the password, not IAM
    raise AssertionError(f"no IAM mapping for {service}:{operation}")


def allowed(stack: Stack, function: str) -> list[tuple[list[str], list[str]]]:
    """The (actions, resources) of every Allow statement of the function's policies."""
    policies = stack.resolve(stack.template["Resources"][function]["Properties"].get("Policies") or [])
    statements: list[tuple[list[str], list[str]]] = []
    for policy in policies:
        if "SQSSendMessagePolicy" in policy:
            queue = policy["SQSSendMessagePolicy"]["QueueName"]
            statements.append((["sqs:SendMessage*"], [f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"]))
            continue
        for statement in policy.get("Statement", []):
            assert statement["Effect"] == "Allow"
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            statements.append(([str(a) for a in actions], [str(r) for r in resources]))
    return statements


def permits(statements: list[tuple[list[str], list[str]]], action: str, resource: str) -> bool:
    return any(
        any(fnmatch.fnmatchcase(action, pattern) for pattern in actions)
        and any(fnmatch.fnmatchcase(resource, pattern) for pattern in resources)
        for actions, resources in statements
    )


def _drive_everything(stack: Stack, campaigns: Campaigns) -> None:
    """Every function through its main paths and its error paths."""
    registration = campaigns.app("RegistrationFunction")
    registration.lambda_handler(load_event("registration_post.json"), campaigns.context)
    welcome = campaigns.app("WelcomeWorkerFunction")
    (confirmation,) = queue_messages(stack, "WelcomeQueue")
    welcome.lambda_handler(sqs_event(stack, "WelcomeQueue", [confirmation]), campaigns.context)
    # the links: confirm (then the welcome mail), the unsubscribe page, one-click unsubscribe
    tokens = link_tokens(stack)
    subscriber_id = confirmation["subscriber_id"]
    for name, token in [
        ("registration_confirm_get.json", tokens.sign(CONFIRM, subscriber_id, 60)),
        ("registration_unsubscribe_get.json", tokens.sign(UNSUBSCRIBE, subscriber_id)),
    ]:
        event = load_event(name) | {"queryStringParameters": {"token": token}}
        registration.lambda_handler(event, campaigns.context)
    welcome.lambda_handler(sqs_event(stack, "WelcomeQueue", queue_messages(stack, "WelcomeQueue")), campaigns.context)
    one_click = load_event("registration_unsubscribe_one_click.json")
    one_click["queryStringParameters"] = {"token": tokens.sign(UNSUBSCRIBE, subscriber_id)}
    registration.lambda_handler(one_click, campaigns.context)

    put_subscribers(stack, 30)
    first = campaigns.create(send_at="2026-01-01T10:00:00Z")
    campaigns.call("GET", "/admin/campaigns")
    campaigns.call("PATCH", f"/admin/campaigns/{first['id']}", {"subject": "Edited"})
    campaigns.call("POST", f"/admin/campaigns/{first['id']}/preview", {"email": "r1@example.com"})
    campaigns.call("POST", "/admin/campaigns/preview", {"subject": "S", "content": "C"})
    campaigns.call("POST", f"/admin/campaigns/{first['id']}/test", {"email": "me@example.com"})
    campaigns.app("NewsletterDispatcherFunction").lambda_handler(
        load_event("newsletter_dispatcher_schedule.json"), campaigns.context
    )
    campaigns.run_fanout()
    set_status(stack, "r2@example.com", "unsubscribed")
    campaigns.run_workers()
    campaigns.call("GET", f"/admin/campaigns/{first['id']}/recipients", query={"status": "skipped"})
    campaigns.call("GET", f"/admin/campaigns/{first['id']}/recipients", query={"status": "sent"})

    second = campaigns.create()
    campaigns.send(second["id"])
    campaigns.run_fanout()
    campaigns.call("POST", f"/admin/campaigns/{second['id']}/cancel")
    campaigns.run_workers()
    third = campaigns.create()
    campaigns.call("POST", f"/admin/campaigns/{third['id']}/cancel")
    # a throttled send hands recipients back on the queue (the worker sends to its own queue)
    fourth = campaigns.create()
    campaigns.send(fourth["id"])
    campaigns.run_fanout()
    worker = campaigns.app("NewsletterWorkerFunction")
    throttled = {"Error": {"Code": "TooManyRequestsException", "Message": "Maximum sending rate exceeded."}}
    from botocore.exceptions import ClientError

    worker.campaign_sender.pacer.penalize = lambda seconds: None
    with mock.patch.object(
        worker.campaign_sender.mailer.client, "send_email", side_effect=ClientError(throttled, "SendEmail")
    ):
        campaigns.run_workers()
    # a throttled welcome goes back on its own queue; malformed tasks go to each dead-letter queue
    registration.lambda_handler(
        load_event("registration_post.json") | {"body": json.dumps({"email": "late@example.com"})}, campaigns.context
    )
    with mock.patch.object(welcome.mailer.client, "send_email", side_effect=ClientError(throttled, "SendEmail")):
        welcome.lambda_handler(
            sqs_event(stack, "WelcomeQueue", queue_messages(stack, "WelcomeQueue")), campaigns.context
        )
    welcome.lambda_handler(sqs_event(stack, "WelcomeQueue", [{"kind": "welcome"}]), campaigns.context)
    worker.lambda_handler(sqs_event(stack, "NewsletterQueue", [{"kind": "campaign"}]), campaigns.context)
    fanout = campaigns.app("FanoutFunction")
    fanout.lambda_handler(sqs_event(stack, "FanoutQueue", [{"kind": "fanout"}]), campaigns.context)
    # the admin's subscriber routes: import (both ways), list, one, export, erase
    admin = campaigns.app("AdminFunction")
    for confirmed in ("true", "false"):
        event = api_event(
            "POST", "/admin/subscribers/import", f"email\nimport-{confirmed}@example.com\n", {"confirmed": confirmed}
        )
        event["headers"] = {**event["headers"], "Content-Type": "text/csv"}
        event["multiValueHeaders"] = {**event["multiValueHeaders"], "Content-Type": ["text/csv"]}
        assert admin.lambda_handler(event, campaigns.context)["statusCode"] == 200
    campaigns.call("GET", "/admin/subscribers", query={"q": "r1"})
    campaigns.call("GET", "/admin/subscribers/id-1")
    admin.lambda_handler(api_event("GET", "/admin/subscribers/export"), campaigns.context)
    assert campaigns.call("DELETE", "/admin/subscribers/id-2")[0] == 200
    # the admin's dead-letter view and redrive
    campaigns.call("GET", "/admin/dead-letters")
    campaigns.call("POST", "/admin/dead-letters/redrive", {})
    # the monitoring figures (CloudWatch, and the recent campaigns)
    assert campaigns.call("GET", "/admin/metrics")[0] == 200
    _drive_ses_events(campaigns, first["id"])
    # the console's sign-in
    cognito = boto3.client("cognito-idp", region_name=REGION)
    pool = str(stack.ref("AdminUserPool"))
    cognito.admin_create_user(UserPoolId=pool, Username="iam@example.com", MessageAction="SUPPRESS")
    cognito.admin_set_user_password(
        UserPoolId=pool, Username="iam@example.com", Password="Iam-password-1", Permanent=True
    )
    sign_in = load_event("auth_sign_in.json") | {
        "body": json.dumps({"email": "iam@example.com", "password": "Iam-password-1"})
    }
    assert campaigns.app("AuthFunction").lambda_handler(sign_in, campaigns.context)["statusCode"] == 200


def _drive_ses_events(campaigns: Campaigns, campaign_id: str) -> None:
    """SesEventsFunction: a delivery, a soft and a hard bounce and a complaint on the first campaign's records."""
    ses_events = campaigns.app("SesEventsFunction")
    sent = [record for record in records(campaigns.stack, campaign_id).values() if record["status"] == "sent"]
    plan = [
        ("ses_events_delivery.json", None),
        ("ses_events_bounce.json", "Transient"),
        ("ses_events_bounce.json", None),
    ]
    events = []
    for record, (name, bounce_type) in zip(sent, [*plan, ("ses_events_complaint.json", None)], strict=False):
        event = load_event(name)
        detail = event["detail"]
        detail["mail"]["messageId"] = record["message_id"]
        detail["mail"]["tags"] |= {"campaign": [campaign_id], "subscriber": [record["sk"]]}
        address = [{"emailAddress": f"r{record['sk'].removeprefix('id-')}@example.com"}]
        if "bounce" in detail:
            detail["bounce"]["bouncedRecipients"] = address
            detail["bounce"]["bounceType"] = bounce_type or "Permanent"
        if "complaint" in detail:
            detail["complaint"]["complainedRecipients"] = address
        events.append(event)
    # one batch from SesEventsQueue: BatchGetItem of the records, one transaction for them all
    result = ses_events.lambda_handler(sqs_event(campaigns.stack, "SesEventsQueue", events), campaigns.context)
    assert result == {"batchItemFailures": []}, result
    progress = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=campaigns.stack.physical_name("CampaignsTable"), Key={"id": {"S": f"{campaign_id}#progress"}}
    )["Item"]
    assert len(events) == 4
    counted = {name: int(progress[name]["N"]) for name in ("delivered", "bounced", "complained") if name in progress}
    assert counted == {"delivered": 1, "bounced": 2, "complained": 1}


def test_every_aws_call_of_every_function_is_allowed_by_its_policy(stack: Stack, load_function: Loader) -> None:
    recorder = Recorder()
    real = BaseClient._make_api_call

    def recording(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        recorder(client, operation, params)
        return real(client, operation, params)

    campaigns = TracedCampaigns(stack, load_function, env={"FANOUT_PAGE_SIZE": "10"})
    with mock.patch.object(BaseClient, "_make_api_call", recording):
        _drive_everything(stack, campaigns)

    functions = {call[0] for call in recorder.calls}
    assert functions == set(stack.functions)  # every function was exercised
    # PUBLIC_URL is empty by default: the mailers read the web app's URL from the SSM parameter
    readers = {call[0] for call in recorder.calls if call[1:3] == ("ssm", "GetParameter")}
    assert readers == {"WelcomeWorkerFunction", "NewsletterWorkerFunction", "AdminFunction"}
    denied = sorted(
        {
            (function, action, resource)
            for function, service, operation, params in recorder.calls
            for action, resource in needed(service, operation, params)
            if not permits(allowed(stack, function), action, resource)
        }
    )
    assert denied == [], json.dumps(denied, indent=1)


def test_the_check_catches_a_missing_action(stack: Stack) -> None:
    statements = allowed(stack, "NewsletterWorkerFunction")
    assert permits(statements, "dynamodb:PutItem", table_arn("ResultsTable"))
    # the mailers may read the web app's URL (PUBLIC_URL_PARAMETER), that parameter only; others may not
    for mailer in ("WelcomeWorkerFunction", "NewsletterWorkerFunction", "AdminFunction"):
        name = stack.function_env(mailer)["PUBLIC_URL_PARAMETER"]
        (pair,) = needed("ssm", "GetParameter", {"Name": name})
        assert permits(allowed(stack, mailer), *pair), mailer
        assert not permits(allowed(stack, mailer), "ssm:GetParameter", pair[1] + "-other")
        assert not permits(allowed(stack, mailer), "ssm:PutParameter", pair[1])
    assert not permits(allowed(stack, "RegistrationFunction"), *pair)
    assert not permits(statements, "dynamodb:DeleteItem", table_arn("ResultsTable"))
    assert not permits(statements, "dynamodb:Scan", table_arn("SubscribersTable"))
    assert not permits(allowed(stack, "RegistrationFunction"), "dynamodb:Scan", table_arn("SubscribersTable"))


@pytest.fixture(autouse=True)
def _no_leftover_function() -> Iterator[None]:
    yield
    _current.clear()
