"""Helpers for tests: sample events, reading sent mails and queued messages."""

from __future__ import annotations

import base64
import gzip
import importlib.util
import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import moto.cognitoidp
from joserfc import jwt
from joserfc.jwk import RSAKey

from mailroom.adapters.secrets import keys_of
from mailroom.tokens import Tokens
from mailroom_local.outbox import Outbox
from mailroom_local.template import Stack

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"
ACCOUNT = "123456789012"
REGION = "us-east-1"


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@dataclass(frozen=True)
class SentMail:
    to: list[str]
    sender: str
    subject: str
    headers: dict[str, str]
    text: str | None
    html: str | None


def sent_mails() -> list[SentMail]:
    """Every mail moto's SES accepted, read the way ``/_local/outbox`` reads it."""
    return [
        SentMail(
            to=mail["to"],
            sender=mail["from"],
            subject=mail["subject"],
            headers=mail["headers"],
            text=mail["text"],
            html=mail["html"],
        )
        for mail in Outbox(ACCOUNT, REGION).messages()
    ]


def queue_messages(stack: Stack, logical_id: str) -> list[dict[str, Any]]:
    """Receive (and leave invisible) every message on a queue; bodies parsed as JSON."""
    sqs = boto3.client("sqs", region_name=REGION)
    url = stack.queue_url(logical_id)
    bodies: list[dict[str, Any]] = []
    while True:
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get("Messages", [])
        if not received:
            return bodies
        bodies.extend(json.loads(message["Body"]) for message in received)


def sqs_event(stack: Stack, logical_id: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """An SQS event like the event source mapping delivers, for the given bodies."""
    arn = str(stack.get_att(logical_id, "Arn"))
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"handle-{index}",
                "body": json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795860000000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": REGION,
            }
            for index, body in enumerate(bodies)
        ]
    }


def link_tokens(stack: Stack) -> Tokens:
    """The signer of the stack's links, with the key the stack's secret holds."""
    secret = boto3.client("secretsmanager", region_name=REGION).get_secret_value(
        SecretId=str(stack.ref("LinkSigningSecret"))
    )
    return Tokens(keys_of(secret["SecretString"]))


def put_subscriber(
    stack: Stack, subscriber_id: str, email: str, name: str | None = None, status: str = "subscribed"
) -> None:
    """One subscriber straight into the table (welcomed already, as an existing one is)."""
    item: dict[str, Any] = {
        "email": {"S": email},
        "id": {"S": subscriber_id},
        "status": {"S": status},
        "created_at": {"S": "2026-11-28T09:00:00.000Z"},
        "welcome_queued": {"BOOL": True},
    }
    if name:
        item["name"] = {"S": name}
    boto3.client("dynamodb", region_name=REGION).put_item(TableName=stack.physical_name("SubscribersTable"), Item=item)


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as the module ``name`` (the scripts import each other by that name)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def moto_signing_key() -> RSAKey:
    """The private key moto signs every user pool's tokens with (what Cognito keeps secret)."""
    path = Path(moto.cognitoidp.__file__).parent / "resources" / "jwks-private.json.gz"
    with gzip.open(path) as file:
        return RSAKey.import_key(json.loads(file.read()))


def sign_jwt(claims: dict[str, Any], key: RSAKey, kid: str = "dummy") -> str:
    """An RS256 JWT of ``claims`` with moto's key id (``dummy``) unless told otherwise."""
    return jwt.encode({"alg": "RS256", "kid": kid, "typ": "JWT"}, claims, key)


def jwt_claims(token: str) -> dict[str, Any]:
    """A JWT's payload, unverified."""
    return dict(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==")))
