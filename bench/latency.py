"""Issue #9, latency: sign-up to confirmation mail in the local outbox, on the embedded runtime.

``measure()`` starts ``mailroom_local.Runtime`` (moto's server in this process, each function in
a child process) and sends ``signups`` sign-ups (``POST {api_url}/subscriptions``, each with its
own address) at a steady pace: one every ``1 / rate`` seconds, each from a thread of its own,
so a slow answer never delays the next one (default 5/s, the stage's steady sign-up rate,
``SignUpThrottlingRateLimit``; the local API does not throttle). Each is timed from the moment
its POST is sent:

* API answer: until the 202 is read (the POST's round trip: API route, RegistrationFunction,
  its DynamoDB and SQS calls);
* queue + worker: from the answer until its confirmation mail is accepted by SES (the welcome
  queue, the event source mapping, WelcomeWorkerFunction, ``SendEmail``);
* total: from the send of the POST to the mail.

The mail's moment is exact, not polled: confirmation mails are sent with the configuration set
(WelcomeWorkerFunction's ``CONFIGURATION_SET``), so ``mailroom_local.moto_ext``'s send listener
hears each one in moto's request thread right after moto stored it in the outbox
(``SESV2Response.send_email`` returned), with its ``kind=confirmation`` tag and its recipient.

Every sign-up comes from 127.0.0.1: the template parameter ``SignupsPerSourceIpPerHour``
(default 20) is raised for the run with the runtime's ``overrides``, as the output says.

``python -m bench.latency [--signups N] [--rate R]`` prints the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from bench.run import _table

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
DEFAULT_SIGNUPS = 200
DEFAULT_RATE = 5.0  # sign-ups per second: the template's SignUpThrottlingRateLimit default
PER_IP_PARAMETER = "SignupsPerSourceIpPerHour"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only: no proxies


def _log(message: str) -> None:
    print(f"bench.latency: {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank ``p``th percentile (the smallest value with ``p`` percent at or below it)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


@dataclass
class SignUp:
    address: str
    sent: float = 0.0  # perf_counter: the POST is sent
    answered: float | None = None  # its answer is read
    status: int | None = None
    mailed: float | None = None  # the confirmation mail is in the outbox

    @property
    def api_ms(self) -> float | None:
        return None if self.answered is None else (self.answered - self.sent) * 1000

    @property
    def total_ms(self) -> float | None:
        return None if self.mailed is None else (self.mailed - self.sent) * 1000

    @property
    def queue_ms(self) -> float | None:
        if self.mailed is None or self.answered is None:
            return None
        return (self.mailed - self.answered) * 1000


@dataclass(frozen=True)
class Latency:
    signups: int
    rate: float
    per_ip_limit: int
    seconds: float  # from the first POST to the last mail (or the timeout)
    records: list[SignUp] = field(repr=False)

    def _values(self, name: str) -> list[float]:
        return [value for record in self.records if (value := getattr(record, name)) is not None]

    @property
    def total(self) -> list[float]:
        return self._values("total_ms")

    @property
    def api(self) -> list[float]:
        return self._values("api_ms")

    @property
    def queue(self) -> list[float]:
        return self._values("queue_ms")

    @property
    def accepted(self) -> int:
        return sum(1 for record in self.records if record.status == 202)

    @property
    def mailed(self) -> int:
        return sum(1 for record in self.records if record.mailed is not None)

    @property
    def complete(self) -> bool:
        return self.accepted == self.signups and self.mailed == self.signups


def _post(url: str, record: SignUp) -> None:
    data = json.dumps({"email": record.address}).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    record.sent = time.perf_counter()
    try:
        with _OPENER.open(request, timeout=30) as answer:
            answer.read()
            record.status = answer.status
    except urllib.error.HTTPError as error:
        with error:
            error.read()
            record.status = error.code
    except OSError:
        record.status = 0
    record.answered = time.perf_counter()


def measure(signups: int = DEFAULT_SIGNUPS, rate: float = DEFAULT_RATE, timeout: float = 30.0) -> Latency:
    """``signups`` sign-ups at ``rate`` per second on a fresh embedded runtime; see the module docstring."""
    from mailroom_local import Runtime, moto_ext  # type: ignore[import-not-found, unused-ignore]

    run_id = f"{time.time_ns():x}"[-8:]
    records = {
        address: SignUp(address) for address in (f"latency-{run_id}-{n:04d}@example.com" for n in range(signups))
    }
    mailed = threading.Event()
    lock = threading.Lock()
    waiting = set(records)

    def listener(send: Any) -> None:  # moto's request thread: quick, never raises
        now = time.perf_counter()
        if send.tags.get("kind") != "confirmation":
            return
        for destination in send.destinations:
            record = records.get(parseaddr(destination)[1].lower())
            if record is not None and record.mailed is None:
                record.mailed = now
                with lock:
                    waiting.discard(record.address)
                    if not waiting:
                        mailed.set()

    per_ip = max(1000, signups * 2)
    runtime = Runtime(TEMPLATE, port=0, quiet=True, overrides={PER_IP_PARAMETER: str(per_ip)})
    _log(f"starting the embedded runtime ({PER_IP_PARAMETER}={per_ip})")
    runtime.start()
    moto_ext.add_send_listener(listener)
    try:
        url = f"{runtime.api_url}/subscriptions"
        _post(f"{runtime.api_url}/subscriptions", SignUp(f"warm-up-{run_id}@example.com"))  # init is not measured
        time.sleep(1.0)  # its confirmation mail, out of the way
        _log(f"{signups} sign-ups at {rate:g}/s")
        interval = 1.0 / rate
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=32, thread_name_prefix="signup") as pool:
            for number, record in enumerate(records.values()):
                delay = started + number * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(_post, url, record)
        mailed.wait(timeout)
        last = max((record.mailed for record in records.values() if record.mailed is not None), default=None)
        seconds = (last if last is not None else time.perf_counter()) - started
    finally:
        moto_ext.remove_send_listener(listener)
        runtime.stop()
    return Latency(signups=signups, rate=rate, per_ip_limit=per_ip, seconds=seconds, records=list(records.values()))


# ------------------------------------------------------------------------------ the report
def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f} ms"


def _spread(values: Sequence[float]) -> list[str]:
    return [_ms(percentile(values, p)) for p in (50, 90, 99)] + [_ms(max(values) if values else math.nan)]


def summary_rows(result: Latency) -> list[tuple[str, str, str, str]]:
    """(measurement, result, goal, met) rows for bench.run's main table."""
    total = result.total
    p50, p99 = percentile(total, 50), percentile(total, 99)
    return [
        (
            f"Latency: sign-up (POST /subscriptions) to the confirmation mail in the local outbox, "
            f"{result.signups} sign-ups at {result.rate:g}/s (embedded runtime, {PER_IP_PARAMETER} "
            f"raised to {result.per_ip_limit})",
            f"**p50 {_ms(p50)}, p99 {_ms(p99)}** (p90 {_ms(percentile(total, 90))}, max "
            f"{_ms(max(total) if total else math.nan)}; API answer p50 {_ms(percentile(result.api, 50))}, "
            f"queue + worker p50 {_ms(percentile(result.queue, 50))}; {result.mailed} of {result.signups} mailed)",
            "none set by the issue: p50 and p99 reported",
            "-" if result.complete else f"**{result.signups - result.mailed} not mailed**",
        )
    ]


def table(result: Latency) -> list[str]:
    """The measurement's markdown: the summary row, then the split."""
    lines = _table(["measurement", "result", "goal", "met"], summary_rows(result))
    lines += [
        "",
        f"Latency of {result.signups} sign-ups at {result.rate:g}/s, each timed from the send of its POST:",
        "",
    ]
    lines += _table(
        ["part", "p50", "p90", "p99", "max"],
        [
            ["API answer (POST round trip: RegistrationFunction)", *_spread(result.api)],
            ["queue + worker (answer to mail: WelcomeQueue, WelcomeWorkerFunction, SES)", *_spread(result.queue)],
            ["**total: sign-up to mail in the outbox**", *_spread(result.total)],
        ],
    )
    statuses: dict[int | None, int] = {}
    for record in result.records:
        statuses[record.status] = statuses.get(record.status, 0) + 1
    answers = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items(), key=lambda kv: str(kv[0])))
    lines += [
        "",
        f"Answers {answers}; {result.mailed} of {result.signups} confirmation mails within the run "
        f"({result.seconds:.1f} s from the first POST to the last mail). Steady pace: one POST every "
        f"{1000 / result.rate:.0f} ms, each on its own thread. Mail times are exact (moto_ext's send listener, in "
        f"moto's request thread, on the `kind=confirmation` send), not polled. `{PER_IP_PARAMETER}` was raised "
        f"from 20 to {result.per_ip_limit} for the run (every sign-up comes from 127.0.0.1); a warm-up sign-up "
        "before the run keeps the functions' first-invocation work out of the figures. moto answers in this "
        "process, so AWS's own latencies (API Gateway, the event source mapping's polling, DynamoDB, SES over the "
        "network) are not in the figures: they are the code's and the runtime's share of a deployed stack's.",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n")[0])
    parser.add_argument("--signups", type=int, default=DEFAULT_SIGNUPS, help=f"default {DEFAULT_SIGNUPS}")
    parser.add_argument(
        "--rate", type=float, default=DEFAULT_RATE, help=f"sign-ups per second (default {DEFAULT_RATE:g})"
    )
    args = parser.parse_args(argv)
    result = measure(args.signups, args.rate)
    print("\n".join(table(result)))
    return 0 if result.complete else 1


if __name__ == "__main__":
    sys.exit(main())
