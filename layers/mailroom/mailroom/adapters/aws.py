"""boto3 clients with the retry settings Mailroom uses everywhere.

Clients honour AWS_ENDPOINT_URL (set by the embedded runtime to its moto server), so the
same code runs against AWS and locally. One client per service and config is made in a
process and shared (``_client``).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sesv2 import SESV2Client
    from mypy_boto3_sqs import SQSClient

# Standard mode retries throttling and 5xx with jittered backoff; the logic adds its own
# retries (through the queue) on top, so a few attempts here are enough. Worst case
# 3 x (2 s + 5 s) stays well inside every function's timeout.
# A worker sends from many threads: the connection pools are sized for them. Client-side
# parameter validation is off (AWS validates every request anyway), and so are the
# optional CRC checksums of bodies (DynamoDB and SES require none): on a worker's hot path
# (a claim and a send per mail, transactions of 25) they cost a fifth of its CPU.
POOL = 64
CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=5,
    max_pool_connections=POOL,
    parameter_validation=False,
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
)
# Sending a mail is not idempotent: one attempt per call, never a retry behind our back
# after an answer was lost (which could deliver the same mail twice).
SEND_CONFIG = CONFIG.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=10))


# One client per service and config in a process, shared by every adapter that asks: a client
# is thread-safe, and each one costs its construction: sharing took 3 to 10 ms off the cold
# starts (the admin function made ten clients, five of them DynamoDB, now four; the newsletter
# worker six, now three; docs/performance.md). The key holds the default session (a client copies the
# session's event hooks when it is made: a new session gets new clients) and what a client
# takes from the environment, so a changed environment (tests, the embedded runtime) gets a
# fresh one; clear_clients() forgets them all.
_ENVIRONMENT = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_PROFILE")
_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def _client(service: str, config: Config = CONFIG) -> Any:
    with _lock:
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        # the objects themselves, not their ids: an id can be reused once its object is gone
        key = (service, config, boto3.DEFAULT_SESSION, *(os.environ.get(name) for name in _ENVIRONMENT))
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = boto3.client(service, config=config)  # type: ignore[call-overload]
        return client


def clear_clients() -> None:
    """Forget the shared clients: the next adapter made gets a new one. For whatever changes the
    session's event hooks after clients were made (the chaos tests' fault injector)."""
    with _lock:
        _clients.clear()


def dynamodb_client() -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb")
    return client


def sqs_client() -> SQSClient:
    client: SQSClient = _client("sqs")
    return client


def sesv2_client() -> SESV2Client:
    client: SESV2Client = _client("sesv2", SEND_CONFIG)
    return client


def sesv2_read_client() -> SESV2Client:
    """For SES calls that change nothing (GetAccount): retried like every other client."""
    client: SESV2Client = _client("sesv2")
    return client


def cloudwatch_client() -> Any:
    return _client("cloudwatch")
