"""Issue #9, cost: AWS requests per 1,000 newsletter recipients, and a modeled cost per 1M mails.

A real campaign on the embedded runtime (``mailroom_local.Runtime``: moto's server in this
process, every function in a child process): ``subscribers`` subscribers seeded with DynamoDB
``BatchWriteItem`` (as bench/fanout.py does), a campaign created and sent through the admin API,
and the run waited on until the campaign is ``sent`` and SES's delivery event of every mail is
recorded (the runtime publishes a Delivery event for every send, ``ses_events="all"``, as SES
does for every delivered mail; EventBridge's rule puts each on SesEventsQueue, and
SesEventsFunction records them in batches).

What is counted, and where:

* AWS requests, at moto's WSGI application (``DomainDispatcherApplication.__call__`` wrapped
  for the run), by service (SigV4 credential scope) and action (``X-Amz-Target`` or the REST
  route). A request is the functions' when its User-Agent carries ``exec-env/AWS_Lambda_...``
  (botocore adds ``AWS_EXECUTION_ENV``, which only the sandboxes have). The runtime's own SQS
  calls (``ReceiveMessage``, ``DeleteMessageBatch``) are the event source mappings'; they are
  counted apart. The emulated EventBridge's ``SendMessage`` of each SES event to its rule's
  target queue (its client's user agent carries ``mailroom-local-eventbridge``) is counted
  apart too: in AWS EventBridge makes it, and SQS bills it to the queue's owner. Everything
  else (provisioning, the EMF-to-CloudWatch copy, the benchmark's seeding and polling) is
  left out. DynamoDB request bodies (and read answers) are kept to
  size the items, with DynamoDB's rules (attribute names + values; 1 KB per write unit,
  4 KB per read unit, transactions 2x; global secondary index writes), the updated items read
  back from moto after the run.
* Lambda invocations and durations, by wrapping each function's ``SandboxPool.invoke`` on the
  runtime (the ``Invocation``'s ``duration_ms``, the local wall time of the invocation).
* The functions' log output: every stdout/stderr line a sandbox writes reaches the runtime's
  ``Console.function_line``, wrapped on the runtime's instance: bytes per function, EMF
  objects included (CloudWatch ingests them as log events; the metrics they make are billed
  per metric-month, counted here as distinct metrics).
* X-Ray traces: modeled, from the template's ``AWS::XRay::SamplingRule`` (its reservoir a
  second, shared by the functions it matches, then its fixed rate) over the invocations
  counted, while a campaign of this size goes out at the SES rate.
* Non-empty ``ReceiveMessage`` answers of the event source mappings, with a botocore
  ``after-call`` hook on the runtime's SQS client (the pollers').

SQS requests of the event source mappings are billed: Lambda's pollers call SQS in the
queue owner's account, and "these empty receives are charged per Amazon SQS pricing" (AWS
Knowledge Center, "Why are my Amazon SQS charges higher than expected?",
https://aws.amazon.com/premiumsupport/knowledge-center/sqs-high-charges/). The model charges the
receives that returned messages and the deletes per mail; the empty receives of idle polling
are a fixed monthly cost per queue (the local pollers poll every second; Lambda long-polls 20 s).

``python -m bench.cost [--subscribers N]`` prints the tables.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.run import _table, _yes

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
DEFAULT_SUBSCRIBERS = 2000
GOAL_PER_MILLION = 1.00  # USD per 1M mails, SES's own fee excluded
BENCH_AGENT = "mailroom-bench-cost"
_FUNCTION_AGENT = "exec-env/AWS_Lambda"
_EVENTBRIDGE_AGENT = "mailroom-local-eventbridge"  # mailroom_local.runtime.EVENTBRIDGE_AGENT
_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_REST_ACTIONS = {
    ("ses", "POST", "/v2/email/outbound-emails"): "SendEmail (v2)",
    ("ses", "GET", "/v2/email/account"): "GetAccount (v2)",
}
MAPPING_ACTIONS = frozenset({"ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility"})
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only: no proxies

# ------------------------------------------------------------------------------ prices
# us-east-1 list prices, checked 2026-12-06 (the pages below); no free tier counted.
PRICES_DATE = "2026-12-06"
PRICES: dict[str, tuple[float, str, str]] = {
    # key: (USD, unit, source)
    "lambda_gb_s": (
        0.0000133334,
        "per GB-second, arm64 (first 7.5 billion GB-s a month)",
        "https://aws.amazon.com/lambda/pricing/",
    ),
    "lambda_request": (0.20 / 1e6, "per request ($0.20 per 1M)", "https://aws.amazon.com/lambda/pricing/"),
    "sqs_request": (
        0.40 / 1e6,
        "per request, standard queue ($0.40 per 1M; each 64 KB chunk of a payload is a request)",
        "https://aws.amazon.com/sqs/pricing/",
    ),
    "dynamodb_wru": (
        0.625 / 1e6,
        "per write request unit, on-demand ($0.625 per 1M since 2024-11-01; 1 KB each, transactional 2x)",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    "dynamodb_rru": (
        0.125 / 1e6,
        "per read request unit, on-demand ($0.125 per 1M; 4 KB strongly consistent, eventually 0.5x)",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    "logs_gb": (
        0.50,
        "per GB ingested, CloudWatch Logs standard (EMF included)",
        "https://aws.amazon.com/cloudwatch/pricing/",
    ),
    "metric_month": (
        0.30,
        "per custom metric-month (first 10,000; EMF metrics, not per datapoint)",
        "https://aws.amazon.com/cloudwatch/pricing/",
    ),
    "xray_trace": (5.00 / 1e6, "per trace recorded ($5.00 per 1M)", "https://aws.amazon.com/xray/pricing/"),
    "secrets_request": (
        0.05 / 1e4,
        "per API call ($0.05 per 10,000)",
        "https://aws.amazon.com/secrets-manager/pricing/",
    ),
}
# Modeled, not measured:
PLATFORM_LOG_BYTES = 350  # Lambda's START, END and REPORT lines (text format, with the X-Ray trace id) per invocation
XRAY_DEFAULT = (1.0, 0.05)  # X-Ray's default sampling rule: 1 request a second (the reservoir), then 5%
FREE_SERVICES = {
    "ssm": "Parameter Store standard parameters: no charge for standard throughput",
    "events": "SES events to the default bus: AWS service events are free (the rule's delivery to SesEventsQueue is "
    "billed as SQS requests, above); Scheduler's 14M invocations a month free",
    "ses": "SES's own fee ($0.10 per 1,000 mails) left out by the issue; GetAccount is free",
    "logs": "-",
}


def _log(message: str) -> None:
    print(f"bench.cost: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ DynamoDB sizes
def _number_size(text: str) -> int:
    """DynamoDB's size of a number: about 1 byte per 2 significant digits, plus 1."""
    digits = text.lstrip("-").replace(".", "").lstrip("0").rstrip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value (wire format: {"S": ...}, {"N": ...}, ...)."""
    kind, data = next(iter(value.items()))
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return _number_size(str(data))
    if kind == "B":
        return len(data) if isinstance(data, bytes) else math.floor(len(str(data)) * 3 / 4)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(item).encode()) for item in data)
    if kind == "NS":
        return sum(_number_size(str(item)) for item in data)
    if kind == "BS":
        return sum(math.floor(len(str(item)) * 3 / 4) for item in data)
    if kind == "L":
        return 3 + sum(1 + value_size(item) for item in data)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + value_size(item) for name, item in data.items())
    return len(json.dumps(data))


def item_size(item: Mapping[str, Any]) -> int:
    """An item's size by DynamoDB's rules: UTF-8 attribute names plus their values."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def _units(size: int, per: int) -> int:
    return max(1, math.ceil(size / per))


@dataclass
class Capacity:
    """Request units by (table, action) and the item sizes seen."""

    wru: Counter[tuple[str, str]] = field(default_factory=Counter)
    gsi_wru: Counter[tuple[str, str]] = field(default_factory=Counter)
    rru: Counter[tuple[str, str]] = field(default_factory=Counter)
    sizes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # "table action" -> item sizes


# ------------------------------------------------------------------------------ counting
Key = tuple[str, str]  # (service, action)


@dataclass
class Recorder:
    """Everything the run counts; filled from several threads."""

    function_requests: Counter[Key] = field(default_factory=Counter)
    mapping_requests: Counter[Key] = field(default_factory=Counter)
    eventbridge_requests: Counter[Key] = field(default_factory=Counter)  # its SendMessage to target queues
    eventbridge_chunks: int = 0  # their 64 KB chunks (SQS bills each as a request)
    sqs_chunks: Counter[Key] = field(default_factory=Counter)  # 64 KB chunks of the functions' SQS requests
    dynamodb: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # action, request, answer
    invocations: Counter[str] = field(default_factory=Counter)
    duration_ms: Counter[str] = field(default_factory=Counter)  # billed: each rounded up to 1 ms
    cold_starts: Counter[str] = field(default_factory=Counter)
    init_ms: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    log_bytes: Counter[str] = field(default_factory=Counter)
    log_lines: Counter[str] = field(default_factory=Counter)
    emf_bytes: Counter[str] = field(default_factory=Counter)
    metrics: set[tuple[str, str, tuple[tuple[str, str], ...]]] = field(default_factory=set)
    received_messages: int = 0
    nonempty_receives: int = 0
    counting: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            for name in (
                "function_requests",
                "mapping_requests",
                "eventbridge_requests",
                "sqs_chunks",
                "invocations",
                "duration_ms",
                "cold_starts",
                "init_ms",
                "errors",
                "log_bytes",
                "log_lines",
                "emf_bytes",
            ):
                getattr(self, name).clear()
            self.dynamodb.clear()
            self.metrics.clear()
            self.received_messages = self.nonempty_receives = self.eventbridge_chunks = 0


def _classify(environ: Mapping[str, Any]) -> tuple[str, Key] | None:
    """("function" | "mapping" | "eventbridge", (service, action)) of an AWS request; None for anything else."""
    agent = str(environ.get("HTTP_USER_AGENT", ""))
    scope = _SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    if scope is None or BENCH_AGENT in agent:
        return None
    service = scope.group(1)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        action = str(target).rpartition(".")[2]
    else:
        method, path = str(environ.get("REQUEST_METHOD", "?")), str(environ.get("PATH_INFO", "/"))
        action = _REST_ACTIONS.get((service, method, path), f"{method} {path}")
    if _FUNCTION_AGENT in agent:
        return "function", (service, action)
    if _EVENTBRIDGE_AGENT in agent:
        return "eventbridge", (service, action)
    if service == "sqs" and action in MAPPING_ACTIONS:
        return "mapping", (service, action)
    return None


@contextmanager
def counting_requests(recorder: Recorder) -> Iterator[None]:
    """Count every request of every moto server started in this process meanwhile."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.__call__

    def counting(app: Any, environ: dict[str, Any], start_response: Any) -> Any:
        found = _classify(environ) if recorder.counting else None
        if found is None:
            return original(app, environ, start_response)
        origin, key = found
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        answer = b"".join(original(app, environ, start_response))
        with recorder.lock:
            if origin == "function":
                recorder.function_requests[key] += 1
                if key[0] == "sqs":
                    recorder.sqs_chunks[key] += _units(len(body), 65536)
                if key[0] == "dynamodb":
                    with suppress(ValueError):
                        recorder.dynamodb.append((key[1], json.loads(body or b"{}"), json.loads(answer or b"{}")))
            elif origin == "eventbridge":
                recorder.eventbridge_requests[key] += 1
                recorder.eventbridge_chunks += _units(len(body), 65536)
            else:
                recorder.mapping_requests[key] += 1
        return [answer]

    setattr(DomainDispatcherApplication, "__call__", counting)  # noqa: B010 - patched for the run only
    try:
        yield
    finally:
        setattr(DomainDispatcherApplication, "__call__", original)  # noqa: B010


def _instrument(runtime: Any, recorder: Recorder) -> None:
    """Wrap the runtime's pools' invoke, its console's function_line, the pollers' SQS client."""
    for logical_id, pool in runtime.sandboxes.items():
        invoke = pool.invoke

        def timed(event: Any, _invoke: Callable[[Any], Any] = invoke, _id: str = logical_id) -> Any:
            invocation = _invoke(event)
            if recorder.counting:
                with recorder.lock:
                    recorder.invocations[_id] += 1
                    recorder.duration_ms[_id] += math.ceil(invocation.duration_ms)
                    if invocation.init_ms is not None:
                        recorder.cold_starts[_id] += 1
                        recorder.init_ms[_id] += math.ceil(invocation.init_ms)
                    if not invocation.ok:
                        recorder.errors[_id] += 1
            return invocation

        pool.invoke = timed

    from mailroom_local.metrics import datapoints_of  # type: ignore[import-not-found, unused-ignore]

    console = runtime.console
    function_line = console.function_line

    def line(function: str, text: str) -> None:
        if recorder.counting and text.strip():
            logical_id = function.partition("#")[0]
            size = len(text.rstrip("\n").encode())
            emf = _emf(text)
            with recorder.lock:
                recorder.log_bytes[logical_id] += size
                recorder.log_lines[logical_id] += 1
                if emf is not None:
                    recorder.emf_bytes[logical_id] += size
                    recorder.metrics.update((p.namespace, p.name, p.dimensions) for p in datapoints_of(emf))
        function_line(function, text)

    console.function_line = line

    def received(parsed: Mapping[str, Any], **_: Any) -> None:
        messages = len(parsed.get("Messages") or [])
        if recorder.counting and messages:
            with recorder.lock:
                recorder.nonempty_receives += 1
                recorder.received_messages += messages

    runtime._sqs.meta.events.register("after-call.sqs.ReceiveMessage", received)  # the pollers' client


def _emf(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not stripped.startswith("{") or '"_aws"' not in stripped:
        return None
    try:
        data = json.loads(stripped)
    except ValueError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("_aws"), dict) else None


def sampling_rule(template: Mapping[str, Any]) -> tuple[float, float]:
    """(ReservoirSize, FixedRate) of the template's X-Ray sampling rule for the functions (the one
    AWS::XRay::SamplingRule); X-Ray's default rule (1 a second, 5%) if it has none."""
    rules = [
        resource["Properties"]["SamplingRule"]
        for resource in (template.get("Resources") or {}).values()
        if resource.get("Type") == "AWS::XRay::SamplingRule"
    ]
    if not rules:
        return XRAY_DEFAULT
    if len(rules) > 1:
        raise ValueError("several X-Ray sampling rules: the model knows one")
    return float(rules[0]["ReservoirSize"]), float(rules[0]["FixedRate"])


# ------------------------------------------------------------------------------ the run
def _client(runtime: Any, service: str) -> Any:
    from bench.fanout import _bench_client

    return _bench_client(runtime, service, BENCH_AGENT)


def _seed(dynamodb: Any, table: str, count: int) -> None:
    from bench.workload import subscriber
    from mailroom.adapters.dynamodb import to_item

    def write(start: int) -> None:
        pending: dict[str, Any] = {
            table: [
                {"PutRequest": {"Item": to_item(subscriber(index, prefix="cost").model_dump(mode="json"))}}
                for index in range(start, min(start + 25, count))
            ]
        }
        for attempt in range(10):
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(0.05 * 2**attempt)
        raise RuntimeError(f"seeding: items still unprocessed at {start}")

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="seed") as pool:
        list(pool.map(write, range(0, count, 25)))


def _http(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", "Authorization": token}
    )
    try:
        with _OPENER.open(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode(errors="replace")


@dataclass(frozen=True)
class Snapshot:
    """The tables after the run: item sizes by key, and each table's key and index schema."""

    sizes: dict[str, dict[str, int]]  # table -> key -> size
    items: dict[str, dict[str, dict[str, Any]]]  # table -> key -> item
    keys: dict[str, list[str]]  # table -> key attribute names
    indexes: dict[str, list[tuple[str, list[str], str]]]  # table -> (name, key attributes, projection type)

    def key_of(self, table: str, key: Mapping[str, Any]) -> str:
        return json.dumps([key.get(name) for name in self.keys.get(table, [])], sort_keys=True)

    def size(self, table: str, key: Mapping[str, Any], default: int = 0) -> int:
        return self.sizes.get(table, {}).get(self.key_of(table, key), default)


def _snapshot(dynamodb: Any, tables: Sequence[str]) -> Snapshot:
    sizes: dict[str, dict[str, int]] = {}
    items: dict[str, dict[str, dict[str, Any]]] = {}
    keys: dict[str, list[str]] = {}
    indexes: dict[str, list[tuple[str, list[str], str]]] = {}
    for table in tables:
        described = dynamodb.describe_table(TableName=table)["Table"]
        keys[table] = [part["AttributeName"] for part in described["KeySchema"]]
        indexes[table] = [
            (
                index["IndexName"],
                [part["AttributeName"] for part in index["KeySchema"]],
                index.get("Projection", {}).get("ProjectionType", "ALL"),
            )
            for index in described.get("GlobalSecondaryIndexes") or []
        ]
        sizes[table], items[table] = {}, {}
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            for item in page.get("Items") or []:
                marker = json.dumps([item.get(name) for name in keys[table]], sort_keys=True)
                sizes[table][marker] = item_size(item)
                items[table][marker] = item
    return Snapshot(sizes, items, keys, indexes)


def capacity(recorder: Recorder, snapshot: Snapshot) -> Capacity:  # noqa: C901 - one branch per DynamoDB action
    """Request units of the functions' DynamoDB requests (DynamoDB's rules; module docstring)."""
    result = Capacity()

    def write(table: str, action: str, size: int, item: Mapping[str, Any], factor: int, update: str | None) -> None:
        result.wru[(table, action)] += factor * _units(size, 1024)
        result.sizes[f"{table} {action}"].append(size)
        for _, attributes, projection in snapshot.indexes.get(table, []):
            if any(name not in item for name in attributes):
                continue  # not in this (sparse) index
            keys_changed = update is None or any(name in update for name in attributes)
            if projection == "ALL" or keys_changed:
                projected = (
                    size
                    if projection == "ALL"
                    else sum(
                        len(name.encode()) + value_size(item[name])
                        for name in {*attributes, *snapshot.keys.get(table, [])}
                        if name in item
                    )
                )
                result.gsi_wru[(table, action)] += _units(projected, 1024)

    def stored(table: str, key: Mapping[str, Any]) -> tuple[int, Mapping[str, Any]]:
        marker = snapshot.key_of(table, key)
        return snapshot.sizes.get(table, {}).get(marker, 1), snapshot.items.get(table, {}).get(marker, key)

    def read(table: str, action: str, size: int, consistent: bool, factor: float = 1.0) -> None:
        units = _units(size, 4096) * (1.0 if consistent else 0.5) * factor
        result.rru[(table, action)] += units  # type: ignore[assignment]  # halves: kept as float in a Counter

    for action, request, answer in recorder.dynamodb:
        table = str(request.get("TableName", "?"))
        if action == "PutItem":
            item = request.get("Item") or {}
            write(table, action, item_size(item), item, 1, None)
        elif action in ("UpdateItem", "DeleteItem"):
            size, item = stored(table, request.get("Key") or {})
            write(
                table,
                action,
                size,
                item,
                1,
                str(request.get("UpdateExpression", "")) if action == "UpdateItem" else None,
            )
        elif action == "TransactWriteItems":
            for entry in request.get("TransactItems") or []:
                kind, part = next(iter(entry.items()))
                table = str(part.get("TableName", "?"))
                if kind == "Put":
                    item = part.get("Item") or {}
                    write(table, f"Transact {kind}", item_size(item), item, 2, None)
                else:
                    size, item = stored(table, part.get("Key") or {})
                    update = str(part.get("UpdateExpression", "")) if kind == "Update" else ""
                    if kind == "ConditionCheck":
                        result.wru[(table, f"Transact {kind}")] += 2 * _units(size, 1024)
                    else:
                        write(table, f"Transact {kind}", size, item, 2, update)
        elif action == "BatchWriteItem":
            for name, requests in (request.get("RequestItems") or {}).items():
                for entry in requests:
                    if "PutRequest" in entry:
                        item = entry["PutRequest"].get("Item") or {}
                        write(name, action, item_size(item), item, 1, None)
                    else:
                        size, item = stored(name, entry.get("DeleteRequest", {}).get("Key") or {})
                        write(name, action, size, item, 1, None)
        elif action == "GetItem":
            read(table, action, item_size(answer.get("Item") or {}), bool(request.get("ConsistentRead")))
        elif action == "BatchGetItem":
            for name, items in (answer.get("Responses") or {}).items():
                consistent = bool((request.get("RequestItems") or {}).get(name, {}).get("ConsistentRead"))
                for item in items:
                    read(name, action, item_size(item), consistent)
        elif action in ("Query", "Scan"):
            size = sum(item_size(item) for item in answer.get("Items") or [])
            read(table, action, size, bool(request.get("ConsistentRead")))
        elif action == "TransactGetItems":
            for entry in answer.get("Responses") or []:
                read(table, action, item_size(entry.get("Item") or {}), True, 2.0)
    return result


@dataclass(frozen=True)
class Cost:
    subscribers: int
    recipients: int
    sent: int
    delivered: int
    seconds: float
    done: bool
    ses_rate: float
    memory_mb: dict[str, int]
    sampling: tuple[float, float]  # the template's X-Ray sampling rule for the functions: (reservoir a second, rate)
    recorder: Recorder = field(repr=False)
    capacity: Capacity = field(repr=False)
    errors: list[str] = field(default_factory=list, repr=False)  # the runtime's ERROR and WARNING lines

    @property
    def per_k(self) -> float:
        return 1000 / max(1, self.sent)

    @property
    def per_million(self) -> float:
        return 1e6 / max(1, self.sent)

    def lines(self) -> list[tuple[str, str, float, str]]:
        """(service, what, USD per 1M mails, assumption) of the model."""
        m, r, c = self.per_million, self.recorder, self.capacity
        price = {key: value for key, (value, _, _) in PRICES.items()}
        out: list[tuple[str, str, float, str]] = []
        for function in sorted(r.invocations):
            gb_s = r.duration_ms[function] / 1000 * self.memory_mb[function] / 1024
            out.append(
                (
                    "Lambda",
                    f"{function}: {r.invocations[function] * m / 1e6 * 1000:,.1f}k invocations, "
                    f"{gb_s * m:,.0f} GB-s at {self.memory_mb[function]} MB",
                    (gb_s * price["lambda_gb_s"] + r.invocations[function] * price["lambda_request"]) * m,
                    "local wall time of each invocation, rounded up to 1 ms",
                )
            )
        wru = sum(c.wru.values()) + sum(c.gsi_wru.values())
        rru = float(sum(c.rru.values()))
        out.append(
            (
                "DynamoDB",
                f"{wru * m / 1e6:,.2f}M WRU ({sum(c.gsi_wru.values()) * m / 1e6:,.2f}M of them index writes), "
                f"{rru * m / 1e6:,.2f}M RRU",
                wru * m * price["dynamodb_wru"] + rru * m * price["dynamodb_rru"],
                "items sized by DynamoDB's rules; updates at the item's final size",
            )
        )
        sqs = sum(r.sqs_chunks.values())
        out.append(
            (
                "SQS (functions)",
                f"{sqs * m / 1e6:,.3f}M requests (64 KB chunks)",
                sqs * m * price["sqs_request"],
                "SendMessage(Batch) and the functions' own deletes",
            )
        )
        esm = r.nonempty_receives + sum(
            n for (_, action), n in r.mapping_requests.items() if action != "ReceiveMessage"
        )
        targets = r.eventbridge_chunks
        out.append(
            (
                "SQS (EventBridge to SesEventsQueue)",
                f"{targets * m / 1e6:,.3f}M SendMessage (64 KB chunks)",
                targets * m * price["sqs_request"],
                "EventBridge's SendMessage of each SES event to the rule's target queue, billed to the queue's owner",
            )
        )
        out.append(
            (
                "SQS (event source mappings)",
                f"{esm * m / 1e6:,.3f}M requests: receives that returned messages, deletes",
                esm * m * price["sqs_request"],
                "billed to the queue owner; empty receives of idle polling are a fixed monthly cost",
            )
        )
        log_bytes = sum(r.log_bytes.values()) + PLATFORM_LOG_BYTES * sum(r.invocations.values())
        out.append(
            (
                "CloudWatch Logs",
                f"{log_bytes * m / 1e9:,.2f} GB ingested ({sum(r.emf_bytes.values()) * m / 1e9:,.2f} GB of it EMF)",
                log_bytes * m / 1e9 * price["logs_gb"],
                f"the functions' lines as written, plus {PLATFORM_LOG_BYTES} B of Lambda's START/END/REPORT "
                "per invocation",
            )
        )
        reservoir, rate = self.sampling
        traced = self.traces(reservoir, rate)
        default = self.traces(*XRAY_DEFAULT)
        out.append(
            (
                "X-Ray",
                f"{traced * m / 1e6 * 1000:,.1f}k traces (Tracing: Active)",
                traced * m * price["xray_trace"],
                f"the template's sampling rule ({reservoir:g} a second + {rate:.0%}) over the invocations while "
                f"mails go out at the SES rate; under X-Ray's default rule (1 a second + 5%) "
                f"{default * m / 1e6 * 1000:,.1f}k traces, {_usd(default * m * price['xray_trace'])}",
            )
        )
        secrets = sum(n for (service, _), n in r.function_requests.items() if service == "secretsmanager")
        if secrets:
            out.append(
                (
                    "Secrets Manager",
                    f"{secrets * m:,.0f} GetSecretValue",
                    secrets * m * price["secrets_request"],
                    "one per cold start",
                )
            )
        return out

    def traces(self, reservoir: float, rate: float) -> float:
        """Traces recorded under a sampling rule: ``reservoir`` a second for all the functions it
        matches together (X-Ray shares a rule's reservoir among them), then ``rate`` of the rest,
        while a campaign of this size goes out at the SES rate."""
        invocations = sum(self.recorder.invocations.values())
        sending = self.sent / self.ses_rate  # seconds a campaign of this size takes at the SES rate
        from_reservoir = min(float(invocations), reservoir * sending)
        return from_reservoir + rate * (invocations - from_reservoir)

    @property
    def total(self) -> float:
        return sum(cost for _, _, cost, _ in self.lines())


def measure(subscribers: int = DEFAULT_SUBSCRIBERS, timeout: float = 150.0, ses_rate: float = 100.0) -> Cost:
    """One campaign to ``subscribers`` on a fresh embedded runtime, counted; see the module docstring."""
    from bench.workload import CONTENT, SUBJECT
    from mailroom.adapters.campaigns import CampaignRepository
    from mailroom.models import CampaignStatus
    from mailroom_local import Runtime  # type: ignore[import-not-found, unused-ignore]

    recorder = Recorder()
    with counting_requests(recorder):
        log = io.StringIO()
        runtime = Runtime(TEMPLATE, port=0, stream=log, ses_events="all", ses_max_send_rate=ses_rate)
        _log(f"starting the embedded runtime (SES events for every mail, MaxSendRate {ses_rate:g}/s)")
        runtime.start()
        try:
            _instrument(runtime, recorder)
            tables = runtime.provisioned.tables
            dynamodb = _client(runtime, "dynamodb")
            _log(f"seeding {subscribers:,} subscribers")
            _seed(dynamodb, tables["SubscribersTable"], subscribers)
            token = runtime.admin_token()
            recorder.reset()
            recorder.counting = True
            started = time.perf_counter()
            status, created = _http(
                "POST", f"{runtime.api_url}/admin/campaigns", token, {"subject": SUBJECT, "content": CONTENT}
            )
            if status != 201:
                raise RuntimeError(f"POST /admin/campaigns answered {status}: {created}")
            campaign_id = created["id"]
            status, answer = _http("POST", f"{runtime.api_url}/admin/campaigns/{campaign_id}/send", token)
            if status != 202:
                raise RuntimeError(f"POST .../send answered {status}: {answer}")
            _log("campaign sent; waiting for every mail and its delivery event")
            campaigns = CampaignRepository(tables["CampaignsTable"], client=dynamodb)
            done = False
            campaign = None
            while time.perf_counter() - started < timeout:
                campaign = campaigns.get(campaign_id)
                if (
                    campaign is not None
                    and campaign.status is CampaignStatus.SENT
                    and campaign.delivered >= campaign.sent
                ):
                    done = True
                    break
                time.sleep(0.25)
            time.sleep(1.5)  # the last batch's deletes
            recorder.counting = False
            seconds = time.perf_counter() - started
            snapshot = _snapshot(dynamodb, list(tables.values()))
            memory = {logical_id: spec.memory_size for logical_id, spec in runtime.stack.functions.items()}
            sampling = sampling_rule(runtime.stack.template)
        finally:
            runtime.stop()
    errors = [line for line in log.getvalue().splitlines() if " ERROR " in line or "WARNING" in line]
    return Cost(
        subscribers=subscribers,
        recipients=campaign.recipients if campaign else 0,
        sent=campaign.sent if campaign else 0,
        delivered=campaign.delivered if campaign else 0,
        seconds=seconds,
        done=done,
        ses_rate=ses_rate,
        memory_mb=memory,
        sampling=sampling,
        recorder=recorder,
        capacity=capacity(recorder, snapshot),
        errors=errors,
    )


# ------------------------------------------------------------------------------ the report
def _usd(value: float) -> str:
    return f"${value:,.3f}"


def summary_rows(result: Cost) -> list[tuple[str, str, str, str]]:
    """(measurement, result, goal, met) rows for bench.run's main table."""
    r, per_k = result.recorder, result.per_k
    by_service: Counter[str] = Counter()
    for (service, _), count in r.function_requests.items():
        by_service[service] += count
    services = ", ".join(f"{service} {count * per_k:,.1f}" for service, count in sorted(by_service.items()))
    esm = sum(r.mapping_requests.values())
    lines = sorted(result.lines(), key=lambda line: -line[2])
    top = ", ".join(f"{service} {_usd(cost)}" for service, _, cost, _ in lines[:3])
    total = result.total
    margin = GOAL_PER_MILLION - total
    return [
        (
            f"Cost: AWS requests per 1,000 newsletter recipients, functions only (a campaign to "
            f"{result.subscribers:,} subscribers on the embedded runtime, SES delivery events included)",
            f"**{sum(by_service.values()) * per_k:,.1f}** ({services}); event source mappings "
            f"{esm * per_k:,.1f} SQS requests ({r.nonempty_receives * per_k:,.1f} receives with messages)",
            "-",
            "-",
        ),
        (
            f"Cost: modeled cost per 1M mails, SES's fee excluded (us-east-1 list prices of {PRICES_DATE})",
            f"**{_usd(total)}** (largest: {top})",
            f"<= {_usd(GOAL_PER_MILLION)}",
            _yes(total <= GOAL_PER_MILLION)
            + (
                f" ({_usd(margin)} under)"
                if margin >= 0
                else f" (over by {_usd(-margin)}, {-margin / GOAL_PER_MILLION:.0%})"
            ),
        ),
    ]


def table(result: Cost) -> list[str]:
    r, c, per_k = result.recorder, result.capacity, result.per_k
    lines = _table(["measurement", "result", "goal", "met"], summary_rows(result))
    lines += [
        "",
        f"Run: {result.subscribers:,} subscribers, {result.recipients:,} recipients, {result.sent:,} sent, "
        f"{result.delivered:,} delivery events recorded, {result.seconds:.1f} s from the campaign's creation"
        + ("" if result.done else " - **not done before the timeout**")
        + f"; SES MaxSendRate (local GetAccount) {result.ses_rate:g}/s.",
        "",
        "Requests per 1,000 recipients:",
        "",
    ]
    rows: list[list[object]] = []
    for (service, action), count in sorted(r.function_requests.items()):
        rows.append(["functions", service, action, f"{count:,}", f"{count * per_k:,.2f}"])
    for (service, action), count in sorted(r.mapping_requests.items()):
        rows.append(
            ["event source mappings (billed as SQS requests)", service, action, f"{count:,}", f"{count * per_k:,.2f}"]
        )
    for (service, action), count in sorted(r.eventbridge_requests.items()):
        rows.append(["EventBridge (the rule's target queue)", service, action, f"{count:,}", f"{count * per_k:,.2f}"])
    rows.append(
        [
            "event source mappings",
            "sqs",
            "ReceiveMessage that returned messages",
            f"{r.nonempty_receives:,}",
            f"{r.nonempty_receives * per_k:,.2f}",
        ]
    )
    lines += _table(["who", "service", "action", "requests", "per 1,000 recipients"], rows)
    lines += ["", "Lambda per 1,000 recipients:", ""]
    lines += _table(
        ["function", "memory", "invocations", "mean duration", "GB-s", "cold starts", "errors", "log bytes (EMF)"],
        [
            [
                function,
                f"{result.memory_mb[function]} MB",
                f"{count * per_k:,.1f}",
                f"{r.duration_ms[function] / count:,.0f} ms",
                f"{r.duration_ms[function] / 1000 * result.memory_mb[function] / 1024 * per_k:,.2f}",
                r.cold_starts[function],
                r.errors[function],
                f"{r.log_bytes[function] * per_k:,.0f} ({r.emf_bytes[function] * per_k:,.0f})",
            ]
            for function, count in sorted(r.invocations.items())
        ],
    )
    lines += ["", "DynamoDB request units per 1,000 recipients (item sizes measured; updates at the final size):", ""]
    keys = sorted(set(c.wru) | set(c.gsi_wru) | set(c.rru))
    lines += _table(
        ["table", "action", "WRU", "index WRU", "RRU", "item size (mean)"],
        [
            [
                table_name.rpartition("-")[2] if "-" in table_name else table_name,
                action,
                f"{c.wru[(table_name, action)] * per_k:,.1f}",
                f"{c.gsi_wru[(table_name, action)] * per_k:,.1f}",
                f"{float(c.rru[(table_name, action)]) * per_k:,.1f}",
                f"{sum(sizes) / len(sizes):,.0f} B" if (sizes := c.sizes.get(f"{table_name} {action}")) else "-",
            ]
            for table_name, action in keys
        ],
    )
    lines += ["", f"Modeled cost per 1M mails (SES's fee excluded), us-east-1 list prices of {PRICES_DATE}:", ""]
    model = sorted(result.lines(), key=lambda line: -line[2])
    total = result.total
    lines += _table(
        ["service", "what (per 1M mails)", "USD", "share", "assumption"],
        [
            [service, what, _usd(cost), f"{cost / total:.0%}" if total else "-", note]
            for service, what, cost, note in model
        ]
        + [["**total**", "", f"**{_usd(total)}**", "100%", f"goal <= {_usd(GOAL_PER_MILLION)}"]],
    )
    metrics = len(r.metrics)
    lines += [
        "",
        f"Fixed monthly, not per mail: {metrics} distinct EMF metrics seen in the run = "
        f"{_usd(metrics * PRICES['metric_month'][0])} a month at {_usd(PRICES['metric_month'][0])} per metric-month; "
        "the event source mappings' empty receives (Lambda long-polls each queue with several pollers, 20 s each); "
        "the recovery schedule (EventBridge Scheduler, free tier). Free per mail: "
        + "; ".join(f"{name}: {note}" for name, note in FREE_SERVICES.items() if note != "-")
        + ".",
        "",
        "Prices (no free tier counted):",
        "",
    ]
    lines += _table(
        ["item", "USD", "unit", "source"],
        [[key, f"{value:.10g}", unit, source] for key, (value, unit, source) in PRICES.items()],
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=DEFAULT_SUBSCRIBERS, help=f"default {DEFAULT_SUBSCRIBERS}")
    parser.add_argument("--ses-rate", type=float, default=100.0, help="SES MaxSendRate the local GetAccount reports")
    args = parser.parse_args(argv)
    result = measure(args.subscribers, ses_rate=args.ses_rate)
    print("\n".join(table(result)))
    return 0 if result.done else 1


if __name__ == "__main__":
    sys.exit(main())
