"""Measurement 3: fanning a campaign out to N subscribers on the embedded runtime.

The runtime (``mailroom_local.Runtime``) runs moto's server in this process and every
function in a child process. Requests are counted where they all arrive: at moto's server,
by wrapping its WSGI application (``DomainDispatcherApplication.__call__``) for the time of
the run - service from the SigV4 credential scope, action from ``X-Amz-Target`` (or the
REST route), and the time moto spent answering. The benchmark's own requests (seeding,
polling the campaign) carry ``mailroom-bench`` in their User-Agent and are left out.

The newsletter worker's poller is stopped right after the start, so only the fan-out runs:
the tasks stay on the newsletter queue, where they are counted at the end.

(mypy cannot follow the editable install's mapping of ``mailroom_local`` to ``local/``:
those imports are untyped here.)
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bench.workload import CONTENT, SUBJECT, subscriber
from mailroom.adapters.campaigns import CampaignRepository
from mailroom.adapters.dynamodb import to_item
from mailroom.models import Campaign
from mailroom_local import Runtime  # type: ignore[import-not-found, unused-ignore]
from mailroom_local.aws import FAKE_CREDENTIALS  # type: ignore[import-not-found, unused-ignore]

BENCH_AGENT = "mailroom-bench"
WORKER = "NewsletterWorkerFunction"
FANOUT = "FanoutFunction"
FANOUT_LABELS = frozenset({FANOUT})
# What the runtime itself calls, as CloudWatch Logs does in AWS: the functions' EMF made metrics.
RUNTIME_REQUESTS = frozenset({("monitoring", "PutMetricData")})
# What the runtime's event source mappings (pollers) call: Lambda's side, not the functions'.
MAPPING_ACTIONS = frozenset(
    {
        "ReceiveMessage",
        "DeleteMessage",
        "DeleteMessageBatch",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
        "GetQueueAttributes",
    }
)
_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_REST_ACTIONS = {
    ("sesv2", "POST", "/v2/email/outbound-emails"): "SendEmail",
    ("sesv2", "GET", "/v2/email/account"): "GetAccount",
}
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only: no proxies
_REPORT = re.compile(r"REPORT\s+\[(?P<function>[^\]]+)\] \S+ (?P<status>ok|error \S+) duration (?P<ms>\d+) ms")

Key = tuple[str, str]  # (service, action)


def _classify(environ: dict[str, Any]) -> Key | None:
    """(service, action) of an AWS request; None for moto's own API and the benchmark's requests."""
    if BENCH_AGENT in environ.get("HTTP_USER_AGENT", ""):
        return None
    scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if scope is None:
        return None
    service = scope.group(1)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return service, target.rpartition(".")[2]
    method, path = environ.get("REQUEST_METHOD", "?"), environ.get("PATH_INFO", "/")
    return service, _REST_ACTIONS.get((service, method, path), f"{method} {path}")


class RequestCounter:
    """Requests moto's server answered, by (service, action), and the seconds it spent on each kind."""

    def __init__(self) -> None:
        self.counts: Counter[Key] = Counter()
        self.seconds: dict[Key, float] = defaultdict(float)
        self._lock = threading.Lock()

    def add(self, key: Key, seconds: float) -> None:
        with self._lock:
            self.counts[key] += 1
            self.seconds[key] += seconds

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.seconds.clear()

    def snapshot(self) -> tuple[Counter[Key], dict[Key, float]]:
        with self._lock:
            return Counter(self.counts), dict(self.seconds)

    @contextmanager
    def installed(self) -> Iterator[RequestCounter]:
        """Count every request of every moto server started in this process meanwhile."""
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication

        original = DomainDispatcherApplication.__call__
        counter = self

        def counting(app: Any, environ: dict[str, Any], start_response: Any) -> Any:
            key = _classify(environ)
            if key is None:
                return original(app, environ, start_response)
            started = time.perf_counter()
            try:
                return original(app, environ, start_response)
            finally:
                counter.add(key, time.perf_counter() - started)

        setattr(DomainDispatcherApplication, "__call__", counting)  # noqa: B010 - patched for the run only
        try:
            yield self
        finally:
            setattr(DomainDispatcherApplication, "__call__", original)  # noqa: B010


@dataclass(frozen=True)
class Fanout:
    subscribers: int
    segments: int
    seed_seconds: float
    seconds: float  # from POST .../send to the campaign's fan-out done (or the timeout)
    done: bool
    recipients: int  # counters.recipients, as GET /admin/campaigns/{id} shows it
    tasks: int  # messages on the newsletter queue
    counts: Counter[Key]
    server_seconds: dict[Key, float]
    steps: list[float]  # duration of each fan-out step (ms), from the runtime's REPORT lines
    errors: list[str]

    @property
    def per_second(self) -> float:
        return self.recipients / self.seconds if self.seconds else 0.0

    def function_requests(self) -> Counter[Key]:
        return Counter(
            {key: n for key, n in self.counts.items() if key[1] not in MAPPING_ACTIONS and key not in RUNTIME_REQUESTS}
        )

    def mapping_requests(self) -> Counter[Key]:
        return Counter({key: n for key, n in self.counts.items() if key[1] in MAPPING_ACTIONS})


def _http(
    method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 60.0, token: str = ""
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} | ({"Authorization": token} if token else {})
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode(errors="replace")


def _bench_client(runtime: Runtime, service: str, agent: str = BENCH_AGENT) -> Any:
    """A client of the runtime's moto for the bench itself, told apart by ``agent`` in its User-Agent."""
    session = boto3.session.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=runtime.stack.region,
    )
    config = Config(user_agent_extra=agent, retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=16)
    return session.client(service, endpoint_url=runtime.endpoint_url, config=config)  # type: ignore[call-overload]


def seed(dynamodb: Any, table: str, count: int, threads: int = 4) -> None:
    """``count`` subscribers, BatchWriteItem 25 at a time."""

    def write(start: int) -> None:
        requests = [
            {"PutRequest": {"Item": to_item(subscriber(index).model_dump(mode="json"))}}
            for index in range(start, min(start + 25, count))
        ]
        pending: dict[str, Any] = {table: requests}
        for attempt in range(10):
            unprocessed = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not unprocessed:
                return
            pending = unprocessed
            time.sleep(0.05 * 2**attempt)
        raise RuntimeError(f"seeding: items still unprocessed at {start}")

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="seed") as pool:
        list(pool.map(write, range(0, count, 25)))


def _stop_worker(runtime: Runtime) -> None:
    """Stop the newsletter worker's event source mapping: only the fan-out runs."""
    pollers = [poller for poller in runtime.pollers if poller.source.function == WORKER]
    for poller in pollers:
        poller.stop()
    for poller in pollers:
        poller.join(timeout=10.0)


def measure_fanout(template: Path, subscribers: int, timeout: float, poll_interval: float = 0.25) -> Fanout:
    counter = RequestCounter()
    log = io.StringIO()
    with counter.installed():
        runtime = Runtime(template, port=0, stream=log)
        runtime.start()
        try:
            _stop_worker(runtime)
            assert runtime.provisioned is not None
            tables = runtime.provisioned.tables
            dynamodb, sqs = _bench_client(runtime, "dynamodb"), _bench_client(runtime, "sqs")
            started = time.perf_counter()
            seed(dynamodb, tables["SubscribersTable"], subscribers)
            seed_seconds = time.perf_counter() - started

            counter.reset()
            status, created = _http(
                "POST",
                f"{runtime.api_url}/admin/campaigns",
                {"subject": SUBJECT, "content": CONTENT},
                token=runtime.admin_token(),
            )
            if status != 201:
                raise RuntimeError(f"POST /admin/campaigns answered {status}: {created}\n{_tail(log)}")
            campaign_id = created["id"]
            started = time.perf_counter()
            status, sent = _http(
                "POST", f"{runtime.api_url}/admin/campaigns/{campaign_id}/send", token=runtime.admin_token()
            )
            if status != 202:
                raise RuntimeError(f"POST /admin/campaigns/{campaign_id}/send answered {status}: {sent}\n{_tail(log)}")
            # Polled with the repository itself (its requests carry the benchmark's mark)
            campaigns = CampaignRepository(tables["CampaignsTable"], client=dynamodb)
            done = False
            campaign: Campaign | None = None
            while time.perf_counter() - started < timeout:
                campaign = campaigns.get(campaign_id)
                if campaign is not None and campaign.fanout_done:
                    done = True
                    break
                time.sleep(poll_interval)
            seconds = time.perf_counter() - started
            counts, server_seconds = counter.snapshot()

            # What the admin API shows (after the count)
            status, view = _http("GET", f"{runtime.api_url}/admin/campaigns/{campaign_id}", token=runtime.admin_token())
            if status != 200:
                raise RuntimeError(f"GET /admin/campaigns/{campaign_id} answered {status}: {view}\n{_tail(log)}")
            recipients = int(view["counters"]["recipients"])
            queue_url = runtime.provisioned.queues["NewsletterQueue"].url
            attributes = sqs.get_queue_attributes(
                QueueUrl=queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            tasks = sum(int(value) for value in attributes.values())
            segments = campaign.segments if campaign is not None else 0
        finally:
            runtime.stop()
    steps, errors = _read_log(log.getvalue())
    return Fanout(
        subscribers=subscribers,
        segments=segments,
        seed_seconds=seed_seconds,
        seconds=seconds,
        done=done,
        recipients=recipients,
        tasks=tasks,
        counts=counts,
        server_seconds=server_seconds,
        steps=steps,
        errors=errors,
    )


def _tail(log: io.StringIO, lines: int = 40) -> str:
    """The end of the runtime's log, for an error message."""
    return "\n".join(log.getvalue().splitlines()[-lines:])


def _read_log(text: str) -> tuple[list[float], list[str]]:
    """Fan-out step durations (REPORT lines) and the runtime's error lines."""
    steps: list[float] = []
    errors: list[str] = []
    for line in text.splitlines():
        report = _REPORT.search(line)
        if report and report["function"].split("#")[0] in FANOUT_LABELS:
            steps.append(float(report["ms"]))
            if report["status"] != "ok":
                errors.append(line.strip())
        elif " ERROR " in line or "Traceback" in line:
            errors.append(line.strip())
    return steps, errors
