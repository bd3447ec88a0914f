"""SES event publishing to EventBridge: the events a configuration set's EventBridge
destination puts on the default bus, delivered to the targets of the template's rules.

* **Which mails.** A send that SES v2 ``SendEmail`` accepted with a ``ConfigurationSetName``
  (captured by :mod:`.moto_ext`: moto keeps neither it nor the tags). Like SES's mailbox
  simulator, the recipient decides what happens (a ``+label`` in the local part is ignored):

  ===================================== ==================================================
  ``success@simulator.amazonses.com``   Send, Delivery
  ``bounce@simulator.amazonses.com``    Send, Bounce (``Permanent``/``General``)
  ``complaint@simulator.amazonses.com`` Send, Delivery, Complaint (``abuse``)
  ``ooto@simulator.amazonses.com``      Send, Delivery (the auto-reply itself is not simulated)
  ``suppressionlist@simulator...``      Send, Bounce (``Permanent``/``OnAccountSuppressionList``)
  any other address                     nothing, by default; Send, Delivery with
                                        ``MAILROOM_LOCAL_SES_EVENTS=all``
  ===================================== ==================================================

  Other addresses get no events by default: a 10,000-mail campaign would otherwise cost
  10,000 messages to record (and invocations). ``MAILROOM_LOCAL_SES_EVENTS=off`` turns
  the events off altogether (``simulator`` is the default).
* **What they look like.** EventBridge's envelope (``source`` ``aws.ses``, ``detail-type``
  "Email Sent", "Email Delivered", "Email Bounced", "Email Complaint Received", the
  configuration set's ARN in ``resources``) around SES's event record (``eventType``, the
  ``mail`` object with the real message id and the tags - every value a list, SES's own
  ``ses:configuration-set``, ``ses:from-domain``, ... included - and the ``delivery``,
  ``bounce`` or ``complaint`` object). The original headers (``headers``,
  ``commonHeaders``) are left out. Event ids and feedback ids derive from the message id,
  so the same mail always makes the same events.
* **Where they go.** To the target of every enabled rule on the default bus whose pattern
  matches (:func:`matches`: exact values, lists of them, nested objects - what the template
  uses; any other pattern feature is refused when the runtime starts), in the background:
  one thread delivers them in order, a moment after the send (``delay``; SES reports a
  delivery seconds after it accepted the mail).

  - A rule whose target is one of the stack's queues (an ``AWS::Events::Rule``, as the
    template's ``SesFeedbackRule``): the event, as JSON, becomes one SQS message on that
    queue in moto (``send``, as EventBridge's ``SendMessage``); the runtime's poller of the
    queue's event source mapping then invokes the function with batches. A refused send is
    retried like EventBridge's retries (after about 1 and 2 minutes), then dropped.
  - A function's ``EventBridgeRule`` event: the function is invoked with the event,
    asynchronously; a failed invocation is retried like Lambda's asynchronous invocations
    (after about 1 and 2 minutes), then dropped with an error line.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .console import Console
from .moto_ext import SesSend
from .parameters import TemplateError
from .sandbox import Invocation
from .scheduler import ASYNC_RETRY_DELAYS
from .template import EventRuleSpec

__all__ = [
    "EVENTS_ENV",
    "MODES",
    "SIMULATOR_DOMAIN",
    "SesEventBus",
    "build_events",
    "check_pattern",
    "matches",
    "resolve_mode",
]

EVENTS_ENV = "MAILROOM_LOCAL_SES_EVENTS"
MODES = ("simulator", "all", "off")
SIMULATOR_DOMAIN = "simulator.amazonses.com"
_NAMESPACE = uuid.UUID("6d61696c-726f-6f6d-2d73-65732d657674")  # ids derive from the message id
_MTA = "mailroom-local.smtp-out.amazonses.com"

DETAIL_TYPES = {
    "Send": "Email Sent",
    "Delivery": "Email Delivered",
    "Bounce": "Email Bounced",
    "Complaint": "Email Complaint Received",
}
# What SES's mailbox simulator does per local part: the events after Send.
SIMULATOR: dict[str, tuple[tuple[str, ...], ...]] = {
    "success": (("Delivery",),),
    "ooto": (("Delivery",),),
    "bounce": (("Bounce", "Permanent", "General"),),
    "suppressionlist": (("Bounce", "Permanent", "OnAccountSuppressionList"),),
    "complaint": (("Delivery",), ("Complaint", "abuse")),
}


def resolve_mode(value: str | None = None) -> str:
    """``value``, else ``$MAILROOM_LOCAL_SES_EVENTS``, else ``simulator``; ValueError if unknown."""
    mode = (value if value is not None else os.environ.get(EVENTS_ENV, "")).strip().lower() or "simulator"
    if mode not in MODES:
        raise ValueError(f"{EVENTS_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


# ------------------------------------------------------------------------- patterns
def check_pattern(pattern: Any, where: str = "Pattern") -> None:
    """Raise TemplateError for what :func:`matches` does not implement (content filters such
    as ``prefix``, ``anything-but``, ``exists``, ``numeric``; ``$or``)."""
    if not isinstance(pattern, Mapping) or not pattern:
        raise TemplateError(f"{where}: an event pattern is a non-empty object")
    for key, value in pattern.items():
        if key.startswith("$"):
            raise TemplateError(f"{where}.{key}: not supported by the local runtime")
        if isinstance(value, Mapping):
            check_pattern(value, f"{where}.{key}")
        elif isinstance(value, list) and value:
            for item in value:
                if isinstance(item, (Mapping, list)):
                    raise TemplateError(
                        f"{where}.{key}: content filters ({item!r}) are not supported by the local runtime"
                    )
        else:
            raise TemplateError(f"{where}.{key}: a pattern's leaves are non-empty lists of values")


def _equal(expected: Any, value: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return expected is value
    return bool(expected == value)


def matches(pattern: Mapping[str, Any], event: Any) -> bool:
    """EventBridge's matching of exact values: every field of the pattern must be in the event;
    a list matches a value equal to one of its items (or, for an array in the event, any of
    its elements equal to one); an object matches the event's object field by field."""
    if not isinstance(event, Mapping):
        return False
    for key, expected in pattern.items():
        if key not in event:
            return False
        value = event[key]
        if isinstance(expected, Mapping):
            if not matches(expected, value):
                return False
            continue
        values = value if isinstance(value, list) else [value]
        if not any(_equal(item, candidate) for item in expected for candidate in values):
            return False
    return True


# --------------------------------------------------------------------------- events
def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _simulated(address: str) -> tuple[tuple[str, ...], ...] | None:
    local, _, domain = address.strip().lower().rpartition("@")
    if domain != SIMULATOR_DOMAIN:
        return None
    return SIMULATOR.get(local.partition("+")[0])


def _mail(send: SesSend) -> dict[str, Any]:
    domain = send.source.rpartition("@")[2].rstrip(">")
    tags = {
        "ses:configuration-set": [send.configuration_set],
        "ses:source-ip": ["127.0.0.1"],
        "ses:from-domain": [domain],
        "ses:caller-identity": ["mailroom-local"],
    } | {name: [value] for name, value in send.tags.items()}
    return {
        "timestamp": _iso(send.sent_at),
        "source": send.source,
        "sourceArn": f"arn:aws:ses:{send.region}:{send.account_id}:identity/{send.source}",
        "sendingAccountId": send.account_id,
        "messageId": send.message_id,
        "destination": list(send.destinations),
        "headersTruncated": False,
        "tags": tags,
    }


def _outcome(step: tuple[str, ...], address: str, send: SesSend, at: datetime, feedback_id: str) -> dict[str, Any]:
    kind = step[0]
    if kind == "Delivery":
        return {
            "delivery": {
                "timestamp": _iso(at),
                "processingTimeMillis": int((at - send.sent_at).total_seconds() * 1000),
                "recipients": [address],
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": _MTA,
            }
        }
    if kind == "Bounce":
        return {
            "bounce": {
                "feedbackId": feedback_id,
                "bounceType": step[1],
                "bounceSubType": step[2],
                "bouncedRecipients": [
                    {
                        "emailAddress": address,
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
                "timestamp": _iso(at),
                "reportingMTA": f"dns; {_MTA}",
            }
        }
    return {
        "complaint": {
            "feedbackId": feedback_id,
            "complainedRecipients": [{"emailAddress": address}],
            "timestamp": _iso(at),
            "userAgent": "Amazon SES Mailbox Simulator",
            "complaintFeedbackType": step[1],
            "arrivalDate": _iso(at),
        }
    }


def build_events(send: SesSend, mode: str = "simulator") -> list[dict[str, Any]]:
    """The EventBridge events SES publishes for ``send``, in order (see the module docstring)."""
    if mode == "off":
        return []
    steps: list[tuple[str, tuple[str, ...]]] = []
    for address in send.destinations:
        simulated = _simulated(address)
        if simulated is not None:
            steps += [(address, step) for step in simulated]
        elif mode == "all":
            steps.append((address, ("Delivery",)))
    if not steps:
        return []
    mail = _mail(send)

    def envelope(event_type: str, at: datetime, seq: int, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid5(_NAMESPACE, f"{send.message_id}/{seq}")),
            "detail-type": DETAIL_TYPES[event_type],
            "source": "aws.ses",
            "account": send.account_id,
            "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": send.region,
            "resources": [f"arn:aws:ses:{send.region}:{send.account_id}:configuration-set/{send.configuration_set}"],
            "detail": {"eventType": event_type, "mail": mail, **body},
        }

    events = [envelope("Send", send.sent_at, 0, {"send": {}})]
    for seq, (address, step) in enumerate(steps, start=1):
        at = send.sent_at + timedelta(seconds=seq)
        feedback_id = f"{uuid.uuid5(_NAMESPACE, f'{send.message_id}/{seq}/feedback')}-000000"
        events.append(envelope(step[0], at, seq, _outcome(step, address, send, at, feedback_id)))
    return events


# ------------------------------------------------------------------------------ bus
@dataclass
class _Delivery:
    rule: EventRuleSpec
    event: dict[str, Any]
    due: float  # time.monotonic()


class SesEventBus:
    """Turns captured sends into events and delivers them to the matching rules' targets in the background."""

    def __init__(
        self,
        rules: list[EventRuleSpec],
        *,
        invoke: Callable[[str, Any], Invocation],
        account_id: str,
        region: str,
        console: Console,
        mode: str | None = None,
        delay: float = 0.5,
        retry_delays: tuple[float, ...] = ASYNC_RETRY_DELAYS,
        send: Callable[[str, str], None] | None = None,
        queue_depth: Callable[[str], dict[str, int]] | None = None,
    ) -> None:
        """``send(queue, body)`` puts a message on the stack's queue ``queue`` (a logical id),
        raising if SQS refuses it; ``queue_depth(queue)`` answers its approximate counts
        (``visible``, ``in_flight``) for :meth:`status`."""
        self.mode = resolve_mode(mode)
        self.rules = [rule for rule in rules if rule.enabled and rule.bus == "default"]
        for rule in self.rules:
            check_pattern(rule.pattern, f"{rule.target}.{rule.name}.Pattern")
            if rule.queue is not None and send is None:
                raise TemplateError(f"{rule.name}: its target is the queue {rule.queue}, and nothing sends to queues")
        self._invoke = invoke
        self._send = send
        self._queue_depth = queue_depth
        self._account_id = account_id
        self._region = region
        self._console = console
        self._delay = delay
        self._retry_delays = retry_delays
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(("sends", "emitted", "matched", "delivered", "failed", "dropped"), 0)
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="ses-events", daemon=True)
        self._retries: list[threading.Thread] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)

    def join(self, timeout: float) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)
        for worker in list(self._retries):
            worker.join(timeout)

    def status(self) -> dict[str, Any]:
        """What ``GET /_local/ses-events`` shows: the mode, the rules and the counts."""
        rules = []
        for rule in self.rules:
            shown: dict[str, Any] = {
                "name": rule.name,
                "target": rule.target,
                "target_type": "sqs" if rule.queue is not None else "lambda",
                "pattern": rule.pattern,
            }
            if rule.queue is not None and self._queue_depth is not None:
                try:
                    shown["queue"] = self._queue_depth(rule.queue)  # what its function has yet to record
                except Exception as exc:  # a status page answers what it can
                    shown["queue"] = {"error": type(exc).__name__}
            rules.append(shown)
        with self._lock:
            return {"mode": self.mode, "rules": rules, **self._counts, "pending": self._pending}

    def _count(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._counts[name] += by

    def publish(self, send: SesSend) -> None:
        """A listener for :func:`mailroom_local.moto_ext.add_send_listener`: quick, never raises."""
        if send.account_id != self._account_id or send.region != self._region or self._stop.is_set():
            return
        events = build_events(send, self.mode)
        self._count("sends")
        self._count("emitted", len(events))
        due = time.monotonic() + self._delay
        for event in events:
            for rule in self.rules:
                if matches(rule.pattern, event):
                    with self._lock:
                        self._counts["matched"] += 1
                        self._pending += 1
                    self._queue.put(_Delivery(rule, event, due))

    def _run(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None or self._stop.is_set():
                return
            wait = delivery.due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            self._deliver(delivery, attempt=0)

    def _attempt(self, delivery: _Delivery) -> str | None:
        """Deliver once to the rule's target: None if it took the event, else why not."""
        rule = delivery.rule
        if rule.queue is not None:
            assert self._send is not None  # checked at construction
            try:
                self._send(rule.queue, json.dumps(delivery.event))
            except Exception as exc:  # EventBridge retries whatever the error
                return f"SQS refused the message ({type(exc).__name__}); EventBridge retries"
            return None
        invocation = self._invoke(str(rule.function), delivery.event)
        if invocation.ok:
            return None
        return f"{rule.function} failed ({invocation.error_type}); Lambda retries asynchronous invocations"

    def _deliver(self, delivery: _Delivery, attempt: int) -> None:
        failure = self._attempt(delivery)
        if failure is None:
            self._settle("delivered")
            return
        if attempt < len(self._retry_delays) and not self._stop.is_set():
            delay = self._retry_delays[attempt]
            self._count("failed")
            self._console.warning(
                f"{delivery.rule.name}: {delivery.event['detail-type']!r} to {delivery.rule.target}: "
                f"{failure}: again in {delay:.0f} s",
                "ses-events",
            )
            worker = threading.Thread(
                target=self._retry, args=(delivery, attempt + 1, delay), name="ses-events-retry", daemon=True
            )
            self._retries = [w for w in self._retries if w.is_alive()] + [worker]
            worker.start()
            return
        self._count("failed")
        self._settle("dropped")
        self._console.error(
            f"{delivery.rule.name}: {delivery.event['detail-type']!r} to {delivery.rule.target}: {failure}; "
            "after all retries the event is dropped",
            "ses-events",
        )

    def _retry(self, delivery: _Delivery, attempt: int, delay: float) -> None:
        if self._stop.wait(delay):
            return
        self._deliver(delivery, attempt)

    def _settle(self, outcome: str) -> None:
        with self._lock:
            self._counts[outcome] += 1
            self._pending -= 1
