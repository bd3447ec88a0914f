"""Fault injection for chaos tests: throttling, transient errors, lost answers, crashes and
duplicate deliveries, drawn from a seed.

The injector works at the wire, below Mailroom's adapters: it hooks the botocore event
system of a boto3 session (the default one unless told otherwise), so every SES v2, SQS and
DynamoDB client made from it afterwards - the handlers' adapters included - meets the
faults exactly as it would meet AWS's, retries and all:

* ``before-send`` (each HTTP attempt): SES ``SendEmail`` answers ``429
  TooManyRequestsException: Maximum sending rate exceeded.`` with probability ``throttle``;
  any request of the three services answers a 500/503 with probability ``transient``
  (botocore's standard retries apply, as in AWS). Addresses in ``always_fail`` get a 500
  from ``SendEmail`` every time (a fault that does not heal until :meth:`heal`); addresses
  in ``reject`` get ``400 MessageRejected``.
* ``after-call`` (a request that went through): with probability ``lost_answer`` the answer
  is lost on its way back (``ReadTimeoutError``): AWS did the work, the caller cannot know.
* crashes: inside :meth:`FaultInjector.invocation`, with probability ``crash`` the
  invocation dies at its n-th AWS call (n uniform up to the calls its function's last
  invocations made), either before the request leaves or after it was answered. Dying
  raises :class:`Crash`, a ``BaseException`` that no ``except Exception`` catches, and from
  then on every AWS call of that invocation, in any thread, raises it too: nothing the
  process would have done afterwards reaches AWS. That is a process killed between two steps.
* duplicates: :meth:`FaultInjector.duplicate` says (with probability ``duplicate``) whether
  a delivery driver should deliver an SQS message a second time.

Faults are injected only while an invocation is open (``with injector.invocation(name)``),
so a test's own reads and set-up calls are never disturbed. The seed fixes the random
stream; within one invocation a worker's threads draw from it in the order they happen to
run, so a seed reproduces the same rates of faults, not always at the very same calls.
Everything injected is counted in :attr:`FaultInjector.log`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ReadTimeoutError

__all__ = ["Crash", "FaultInjector", "FaultLog", "FaultPlan", "SqsTimeTravel"]

SERVICES = frozenset({"dynamodb", "sqs", "sesv2"})


class Crash(BaseException):
    """The execution environment died here (a killed process): raised through every handler."""


@dataclass(frozen=True)
class FaultPlan:
    """Probabilities (0..1) of each fault, and addresses with faults of their own."""

    throttle: float = 0.0
    transient: float = 0.0
    lost_answer: float = 0.0
    crash: float = 0.0
    duplicate: float = 0.0
    always_fail: frozenset[str] = frozenset()
    reject: frozenset[str] = frozenset()


@dataclass
class FaultLog:
    """What was injected: counts by kind (``throttle``, ``transient:<service>``, ...) and each crash."""

    counts: Counter[str] = field(default_factory=Counter)
    crashes: list[tuple[str, str, str]] = field(default_factory=list)  # (function, operation, before|after)
    # the (pk, sk) of every DynamoDB PutItem an invocation made before it was killed: the
    # claims a crash can strand
    crashed_puts: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class _Invocation:
    function: str
    crash_at: int | None  # the n-th AWS call that dies, or None
    crash_after: bool  # dies once that call was answered (else before it leaves)
    calls: int = 0
    dead: bool = False
    puts: set[tuple[str, str]] = field(default_factory=set)


class FaultInjector:
    """Injects a :class:`FaultPlan`'s faults into boto3 clients (see the module docstring)."""

    def __init__(self, plan: FaultPlan, seed: int, session: boto3.session.Session | None = None) -> None:
        self.plan = plan
        self.seed = seed
        self.log = FaultLog()
        self._always_fail = set(plan.always_fail)
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self._lock = threading.Lock()
        self._current: _Invocation | None = None
        self._calls_per_invocation: dict[str, int] = {}
        self._session = session
        self._installed = False

    # -- set-up ---------------------------------------------------------------------------
    def install(self) -> FaultInjector:
        """Hook the session (clients made before this call are not affected: Mailroom's shared
        clients are forgotten, so the adapters made from now on get hooked ones)."""
        from mailroom.adapters.aws import clear_clients

        events = self._events()
        events.register_first("before-call", self._before_call, unique_id="mailroom-faults-before-call")
        events.register_first("before-send", self._before_send, unique_id="mailroom-faults-before-send")
        events.register_first("after-call", self._after_call, unique_id="mailroom-faults-after-call")
        clear_clients()  # after the hooks: no client made in between is cached without them
        self._installed = True
        return self

    def uninstall(self) -> None:
        if not self._installed:
            return
        events = self._events()
        events.unregister("before-call", unique_id="mailroom-faults-before-call")
        events.unregister("before-send", unique_id="mailroom-faults-before-send")
        events.unregister("after-call", unique_id="mailroom-faults-after-call")
        self._installed = False
        from mailroom.adapters.aws import clear_clients

        clear_clients()  # hooked clients must not outlive the injector

    def _events(self) -> Any:
        session = self._session
        if session is None:
            if boto3.DEFAULT_SESSION is None:
                boto3.setup_default_session()
            session = boto3.DEFAULT_SESSION
        assert session is not None
        return session.events

    def heal(self, address: str) -> None:
        """The fault of an ``always_fail`` address is fixed: its sends succeed from now on."""
        with self._lock:
            self._always_fail.discard(address)

    # -- invocations ----------------------------------------------------------------------
    @contextmanager
    def invocation(self, function: str, crash_at: int | None = None, crash_after: bool = False) -> Iterator[None]:
        """Inject faults into the AWS calls made until the block ends; maybe crash it.

        ``crash_at`` kills it at that AWS call (1 = the first; after it was answered with
        ``crash_after``) instead of the plan's random crash: a crash between two given steps.
        """
        with self._lock:
            after = crash_after
            if crash_at is None and self.plan.crash and self._rng.random() < self.plan.crash:
                crash_at = self._rng.randint(1, max(1, self._calls_per_invocation.get(function, 10)))
                after = self._rng.random() < 0.5
            state = _Invocation(function, crash_at, crash_after=after)
            self._current = state
        try:
            yield
        finally:
            with self._lock:
                if not state.dead and state.calls:
                    learned = self._calls_per_invocation.get(function, state.calls)
                    self._calls_per_invocation[function] = max(1, (learned + state.calls) // 2)
                self._current = None

    def duplicate(self) -> bool:
        """Should this SQS delivery be repeated? (probability ``duplicate``)"""
        with self._lock:
            if self.plan.duplicate and self._rng.random() < self.plan.duplicate:
                self.log.counts["duplicate delivery"] += 1
                return True
            return False

    # -- hooks ----------------------------------------------------------------------------
    def _live(self, model: Any) -> _Invocation | None:
        state = self._current
        if state is None or model.service_model.endpoint_prefix not in _PREFIXES:
            return None
        return state

    def _before_call(self, model: Any, **_: Any) -> None:
        self._at_call(model, "before")

    def _after_call(self, model: Any, http_response: Any, **_: Any) -> None:
        if not self._at_call(model, "after"):
            return
        with self._lock:
            if (
                http_response is not None
                and http_response.status_code < 300
                and self.plan.lost_answer
                and self._rng.random() < self.plan.lost_answer
            ):
                self.log.counts[f"lost answer:{model.service_model.endpoint_prefix}"] += 1
                raise ReadTimeoutError(endpoint_url=f"injected lost answer of {model.name}")

    def _at_call(self, model: Any, when: str) -> bool:
        """Count the call (before it), kill the invocation where planned; False outside one."""
        with self._lock:
            state = self._live(model)
            if state is None:
                return False
            if state.dead:
                raise Crash(f"{state.function} is dead")
            if when == "before":
                state.calls += 1
            if state.crash_at == state.calls and state.crash_after == (when == "after"):
                self._die(state, model.name, when)
            return True

    def _die(self, state: _Invocation, operation: str, when: str) -> None:
        state.dead = True
        self.log.crashed_puts |= state.puts
        self.log.counts["crash"] += 1
        self.log.crashes.append((state.function, operation, when))
        raise Crash(f"{state.function} killed {when} {operation}")

    def _before_send(self, request: Any, **kwargs: Any) -> AWSResponse | None:
        event_name: str = kwargs.get("event_name", "")
        parts = event_name.split(".")
        service = parts[1] if len(parts) > 1 and parts[1] in SERVICES else ""
        operation = parts[2] if len(parts) > 2 else ""
        with self._lock:
            if self._current is None or not service:
                return None
            if self._current.dead:
                raise Crash(f"{self._current.function} is dead")
            if service == "dynamodb" and operation == "PutItem":
                self._current.puts.add(_key_of(request.body))
            if service == "sesv2" and operation == "SendEmail":
                to = _recipients(request.body)
                if to & self._always_fail:
                    self.log.counts["always fail"] += 1
                    return _error(request, service, 500, "InternalFailure", "injected: this address always fails")
                if to & self.plan.reject:
                    self.log.counts["reject"] += 1
                    return _error(request, service, 400, "MessageRejected", "injected: address rejected")
                if self.plan.throttle and self._rng.random() < self.plan.throttle:
                    self.log.counts["throttle"] += 1
                    return _error(request, service, 429, "TooManyRequestsException", "Maximum sending rate exceeded.")
            if self.plan.transient and self._rng.random() < self.plan.transient:
                self.log.counts[f"transient:{service}"] += 1
                status, code = _TRANSIENT[service]
                return _error(request, service, status, code, "injected transient error")
        return None


# botocore's event names use the service id (SERVICES); endpoint prefixes differ for SES.
_PREFIXES = frozenset({"dynamodb", "sqs", "email"})
_TRANSIENT = {
    "dynamodb": (500, "InternalServerError"),
    "sqs": (500, "InternalError"),
    "sesv2": (503, "ServiceUnavailable"),
}


class _Body:
    """The raw stream an AWSResponse reads its content from."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def _key_of(body: Any) -> tuple[str, str]:
    """(pk, sk) of a DynamoDB PutItem request's item (strings; empty if absent)."""
    try:
        item = json.loads(body).get("Item", {})
        return (str(item.get("pk", {}).get("S", "")), str(item.get("sk", {}).get("S", "")))
    except (ValueError, AttributeError):
        return ("", "")


def _recipients(body: Any) -> set[str]:
    try:
        payload = json.loads(body if isinstance(body, (bytes, str)) else b"{}")
        return {str(address).lower() for address in payload.get("Destination", {}).get("ToAddresses", [])}
    except (ValueError, AttributeError):
        return set()


def _error(request: Any, service: str, status: int, code: str, message: str) -> AWSResponse:
    """An error answer in the service's protocol (JSON 1.0 for DynamoDB and SQS, REST-JSON for SES v2)."""
    if service == "sesv2":
        headers = {"x-amzn-ErrorType": code, "Content-Type": "application/json"}
        body = {"message": message}
    else:
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-query-error": f"{code};Receiver"}
        body = {"__type": f"com.amazonaws.{service}#{code}", "message": message}
    url = request.url
    # botocore calls every before-send handler and uses the first answer; moto's handler
    # comes after this one and would still carry the request out. Pointing the request at
    # a host no mock serves makes moto pass it by: the injected answer is all that happens.
    request.url = "https://fault-injected.invalid/"
    raw = _Body(json.dumps(body).encode())
    return AWSResponse(url, status, HTTPHeaders.from_dict(headers), raw)


class SqsTimeTravel:
    """Moves moto's SQS clock forward, so that visibility timeouts and message delays pass
    at once: a chaos run covers hours of retries and backoff in seconds.

    moto's SQS reads the time through ``unix_time``/``unix_time_millis`` in
    ``moto.sqs.models``; :meth:`install` replaces both with the real time plus
    :attr:`offset` (seconds), and :meth:`uninstall` puts them back. Code under test that
    judges ages (e.g. stale claims) should read :meth:`now` too.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self._saved: tuple[Any, Any] | None = None

    def install(self) -> SqsTimeTravel:
        from moto.core.utils import unix_time
        from moto.sqs import models

        def shifted(dt: Any = None) -> float:
            return unix_time(dt) if dt is not None else time.time() + self.offset

        self._saved = (models.unix_time, models.unix_time_millis)  # type: ignore[attr-defined]
        models.unix_time = shifted  # type: ignore[attr-defined]
        models.unix_time_millis = lambda dt=None: shifted(dt) * 1000.0  # type: ignore[attr-defined]
        return self

    def uninstall(self) -> None:
        if self._saved is not None:
            from moto.sqs import models

            models.unix_time, models.unix_time_millis = self._saved  # type: ignore[attr-defined]
            self._saved = None

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def now(self) -> float:
        """The shifted time, seconds since the epoch."""
        return time.time() + self.offset
