"""A chaos run: the real handlers on moto, fed by a model of Lambda's SQS event source
mappings, with faults injected at the wire (``mailroom_local.faults``).

``Chaos`` plays the parts AWS plays around the code:

* **event source mappings**: for each worker queue, receive a batch (``BatchSize`` of the
  template), invoke the handler with the SQS event Lambda would build, delete what the
  response does not list in ``batchItemFailures``. A crashed or failed invocation deletes
  nothing: its messages come back after the visibility timeout and, after
  ``maxReceiveCount`` receives, SQS's redrive policy moves them to the dead-letter queue
  (moto does that, as SQS does). A message may be delivered twice (``duplicate``): the copy
  comes in a later batch, as SQS's at-least-once delivery allows;
* **the clock**: when nothing is visible, time jumps forward (``SqsTimeTravel``) so that
  visibility timeouts, delays and backoffs pass at once; the recovery schedule fires every
  five (virtual) minutes, and once more, after a stalled fan-out would be found, before a
  run may end with empty queues;
* **clients**: sign-ups through the registration API and "send now" through the admin API,
  retried on a 5xx or a crashed invocation, as a browser or a script would.

Everything the handlers do goes through moto; nothing in the code under test is replaced,
except that the newsletter worker is not paced (throttles here are random, not a sign of
sending too fast; pacing has its own tests and benchmark) and the workers read the shifted
clock when they judge how old a claim is.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.parser import HeaderParser
from email.utils import getaddresses
from types import ModuleType
from typing import Any

import boto3

from mailroom.links import CONFIRM
from mailroom_local.faults import Crash, FaultInjector, SqsTimeTravel
from mailroom_local.pollers import build_sqs_event, failed_message_ids
from mailroom_local.template import Stack
from tests.campaigns import api_event
from tests.conftest import LambdaContext
from tests.support import ACCOUNT, REGION, link_tokens, load_event

Loader = Callable[..., ModuleType]
RECOVERY_EVERY_SECONDS = 300
STALLED_AFTER_SECONDS = 900  # logic.fanout.resume_stalled: a fan-out this long without progress
SCHEDULER_RETRIES = 3  # the template's RetryPolicy.MaximumRetryAttempts
IDLE_STEP_SECONDS = 30


@dataclass
class Source:
    queue: str
    function: str
    batch_size: int
    url: str = ""
    arn: str = ""
    copies: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Chaos:
    stack: Stack
    load_function: Loader
    injector: FaultInjector
    travel: SqsTimeTravel
    env: dict[str, str] = field(default_factory=dict)
    invocations: Counter[str] = field(default_factory=Counter)
    _apps: dict[str, ModuleType] = field(default_factory=dict)
    _last_recovery: float = 0.0
    _people: int = 0  # sign-ups so far (each gets its own source IP)

    def __post_init__(self) -> None:
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        self.tokens = link_tokens(self.stack)
        self.sources = [
            Source("WelcomeQueue", "WelcomeWorkerFunction", 10),
            Source("FanoutQueue", "FanoutFunction", 1),
            Source("NewsletterQueue", "NewsletterWorkerFunction", 5),
        ]
        for source in self.sources:
            source.url = self.stack.queue_url(source.queue)
            source.arn = str(self.stack.get_att(source.queue, "Arn"))
        self._last_recovery = self.travel.now()

    # -- functions ------------------------------------------------------------------------
    def app(self, function: str) -> ModuleType:
        if function not in self._apps:
            app = self.load_function(function, **self.env)
            sender = getattr(app, "campaign_sender", None)
            if sender is not None:
                sender.clock = self.utcnow
                sender.pacer.penalize = lambda seconds: None
                app.account_rate = lambda: 1_000_000.0  # no pacing: this run is about correctness
            if hasattr(app, "clock"):
                app.clock = self.utcnow
            self._apps[function] = app
        return self._apps[function]

    def utcnow(self) -> datetime:
        return datetime.fromtimestamp(self.travel.now(), UTC)

    def invoke(
        self, function: str, event: dict[str, Any], crash_at: int | None = None, crash_after: bool = False
    ) -> tuple[str, Any]:
        """("ok", response) | ("crashed", None) | ("error", exception); ``crash_at``: kill it at that AWS call."""
        app = self.app(function)
        timeout_ms = self.stack.functions[function].timeout * 1000  # the template's Timeout
        context = LambdaContext(function_name=function, aws_request_id=str(uuid.uuid4()), remaining_ms=timeout_ms)
        self.invocations[function] += 1
        with self.injector.invocation(function, crash_at=crash_at, crash_after=crash_after):
            try:
                return "ok", app.lambda_handler(event, context)
            except Crash:
                return "crashed", None
            except Exception as exc:
                return "error", exc

    # -- clients --------------------------------------------------------------------------
    def sign_up(self, email: str, name: str, attempts: int = 10) -> int:
        """POST /subscriptions like a browser that retries on 5xx; the final status code."""
        event = load_event("registration_post.json")
        event["body"] = json.dumps({"email": email, "name": name})
        # each person from their own address: the sign-up's per-IP limit stays on, and counts them apart
        self._people += 1
        event["requestContext"]["identity"]["sourceIp"] = f"198.18.{self._people // 256}.{self._people % 256}"
        return self._browse(event, attempts)

    def _browse(self, event: dict[str, Any], attempts: int) -> int:
        """A request to the registration API, tried again on 5xx (or a killed invocation)."""
        status = 0
        for _ in range(attempts):
            outcome, response = self.invoke("RegistrationFunction", event)
            status = response["statusCode"] if outcome == "ok" else 502
            if status < 500:
                return status
        return status

    def subscriber(self, email: str) -> dict[str, Any]:
        item = self.dynamodb.get_item(
            TableName=self.stack.physical_name("SubscribersTable"), Key={"email": {"S": email}}, ConsistentRead=True
        )["Item"]
        return {key: next(iter(value.values())) for key, value in item.items()}

    def confirm(self, email: str, attempts: int = 10) -> int:
        """Open the subscriber's confirmation link like a browser that retries on 5xx (the link
        is signed here with the stack's key: its mail may be the one a fault kept back)."""
        event = load_event("registration_confirm_get.json")
        event["queryStringParameters"] = {"token": self.tokens.sign(CONFIRM, self.subscriber(email)["id"], 3600)}
        event["headers"]["Accept"] = "application/json"
        return self._browse(event, attempts)

    def admin(self, method: str, path: str, body: Any = None, attempts: int = 10) -> tuple[int, Any]:
        status, payload = 0, None
        for _ in range(attempts):
            outcome, response = self.invoke("AdminFunction", api_event(method, path, body))
            if outcome == "ok":
                status, payload = response["statusCode"], json.loads(response["body"])
            else:
                status, payload = 502, None
            if status < 500:
                break
        return status, payload

    # -- the event source mappings and the clock ------------------------------------------
    def poll(self, source: Source) -> bool:
        """One batch to one invocation; False if there was nothing to deliver."""
        if source.copies:
            batch, source.copies = source.copies[: source.batch_size], source.copies[source.batch_size :]
            self.invoke(source.function, build_sqs_event(batch, source.arn, REGION))
            return True
        messages: list[dict[str, Any]] = []
        while len(messages) < source.batch_size:
            received = self.sqs.receive_message(
                QueueUrl=source.url,
                MaxNumberOfMessages=min(10, source.batch_size - len(messages)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not received:
                break
            messages += received
        if not messages:
            return False
        for message in messages:
            if self.injector.duplicate():
                source.copies.append({**message, "ReceiptHandle": f"copy-{uuid.uuid4()}"})
        outcome, response = self.invoke(source.function, build_sqs_event(messages, source.arn, REGION))
        if outcome != "ok":
            return True  # nothing deleted: back after the visibility timeout
        failed = failed_message_ids(response, {m["MessageId"] for m in messages})
        if failed is None:
            return True
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=source.url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start:][:10])],
            )
        return True

    def pending(self, logical_id: str) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.stack.queue_url(logical_id), AttributeNames=["All"])[
            "Attributes"
        ]
        return sum(
            int(attributes.get(name, 0))
            for name in (
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            )
        )

    def recover_if_due(self) -> None:
        if self.travel.now() - self._last_recovery >= RECOVERY_EVERY_SECONDS:
            self.recover()

    def recover(self) -> None:
        """One firing of the recovery schedule; Scheduler retries a failed invocation (3 times)."""
        self._last_recovery = self.travel.now()
        event = {"schedule": "Recovery", "scheduledTime": self.utcnow().isoformat().replace("+00:00", "Z")}
        for _ in range(1 + SCHEDULER_RETRIES):
            if self.invoke("NewsletterDispatcherFunction", event)[0] == "ok":
                return

    def _idle(self) -> bool:
        return not any(self.pending(source.queue) for source in self.sources) and not any(
            source.copies for source in self.sources
        )

    def run(self, max_virtual_seconds: float = 6 * 3600, max_real_seconds: float = 300) -> float:
        """Deliver until every work queue is empty - and stays empty once the recovery
        schedule has had the chance to find a stalled fan-out (a start that died before it
        queued its fan-out leaves the queues empty); returns the virtual seconds that passed."""
        started, real_start = self.travel.now(), time.monotonic()
        while True:
            busy = False
            for source in self.sources:
                busy = self.poll(source) or busy
            self.recover_if_due()
            if busy:
                continue
            if self._idle():
                self.travel.advance(STALLED_AFTER_SECONDS + RECOVERY_EVERY_SECONDS)
                self.recover()
                if self._idle():
                    return self.travel.now() - started
                continue
            if self.travel.now() - started > max_virtual_seconds or time.monotonic() - real_start > max_real_seconds:
                raise AssertionError(
                    f"the queues did not drain: {[(s.queue, self.pending(s.queue)) for s in self.sources]}"
                )
            self.travel.advance(IDLE_STEP_SECONDS)

    # -- reading the outcome --------------------------------------------------------------
    @staticmethod
    def mail_headers() -> list[tuple[str, set[str]]]:
        """(subject, recipients) of every mail moto's SES accepted - headers only, as a full
        parse of thousands of mails would take longer than the run."""
        from moto.ses.models import ses_backends

        parser = HeaderParser()
        found: list[tuple[str, set[str]]] = []
        for message in list(ses_backends[ACCOUNT][REGION].sent_messages):
            headers = parser.parsestr(message.raw_data)
            recipients = {address.lower() for _, address in getaddresses(list(message.destinations or [])) if address}
            found.append((str(make_header(decode_header(headers["Subject"] or ""))), recipients))
        return found

    def dead_letters(self, logical_id: str) -> list[dict[str, Any]]:
        """Every message on a dead-letter queue (left there, visible again)."""
        url = self.stack.queue_url(logical_id)
        found: list[dict[str, Any]] = []
        while True:
            received = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not received:
                for message in found:
                    self.sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
                return found
            found += received
