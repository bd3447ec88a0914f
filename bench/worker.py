"""Measurements 1 and 2: the newsletter worker's throughput and its pacing.

The worker is wired as ``functions/newsletter_worker/app.py`` wires it: the real adapters
(``CampaignResults``, ``CampaignRepository``, ``SubscriberRepository``, ``Mailer``) on real
botocore clients with Mailroom's client configs, ``AccountRate`` -> ``share_of`` ->
``Pacer.set_rate``, a ``ThreadPoolExecutor`` of ``SEND_THREADS``, and each invocation's
batch (the template's ``BatchSize`` tasks) sent together with ``process_many``, as the
handler does. AWS is faked inside botocore (:mod:`bench.fake_aws`).
"""

from __future__ import annotations

import gc
import itertools
import math
import multiprocessing
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import boto3

from bench.fake_aws import FakeAws, SendWindow, Store, client
from bench.workload import CONTENT, SUBJECT, subscriber
from mailroom.adapters.aws import CONFIG, SEND_CONFIG
from mailroom.adapters.campaigns import CampaignRepository
from mailroom.adapters.dynamodb import SubscriberRepository, to_item
from mailroom.adapters.results import CampaignResults
from mailroom.adapters.ses import Mailer
from mailroom.config import NewsletterWorkerSettings
from mailroom.links import Links
from mailroom.logic.delivery import Sender
from mailroom.logic.sending import CampaignSender, TaskResult
from mailroom.mail import to_mime
from mailroom.models import (
    Campaign,
    CampaignStatus,
    CampaignTask,
    ContentFormat,
    DeliveryStatus,
    Outcome,
    Recipient,
    Resolution,
    iso,
    utcnow,
)
from mailroom.pacing import AccountRate, Pacer, share_of
from mailroom.tokens import Tokens
from mailroom.worker import Budget

SENDER = Sender("newsletter@example.com", "Mailroom")
PUBLIC_URL = "https://mailroom.example.com"
# Every mail signs its unsubscribe link (HMAC-SHA256), as in AWS; the key is read once there too.
LINK_TOKENS = Tokens([b"bench-link-signing-key-0123456789abcdef"])
TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
WORKER_FUNCTION = "NewsletterWorkerFunction"
# The worker's defaults (template.yaml / NewsletterWorkerSettings).
_DEFAULTS = NewsletterWorkerSettings.model_fields
DEFAULT_THREADS: int = _DEFAULTS["send_threads"].default
DEFAULT_MAX_CONCURRENCY: int = _DEFAULTS["max_concurrency"].default
UNLIMITED_RATE = 10_000.0  # GetAccount's MaxSendRate when the rate must not be the limiter
NO_DEADLINE = Budget(math.inf)
COMMIT_SIZE = 25  # resolutions per TransactWriteItems (adapters.results)


@dataclass(frozen=True)
class Setup:
    """The tables of template.yaml and a campaign being sent, as the real adapters wrote it."""

    results_table: str
    campaigns_table: str
    subscribers_table: str
    key_schema: dict[str, list[str]]
    campaign_id: str
    campaign_items: list[dict[str, Any]]  # every item of the campaigns table (DynamoDB JSON)
    batch_size: int  # the newsletter worker's SQS BatchSize: tasks per invocation


def prepare() -> Setup:
    """Under moto, once: the template's tables; a campaign created and started by the real
    ``CampaignRepository``. The fakes answer with those items, whatever their layout.

    moto is imported here only: the pacing workers' processes must not carry it (its
    hundreds of thousands of objects would make their garbage collections rarer than a
    Lambda function's, and hide the pauses that pacing has to survive).
    """
    from moto import mock_aws

    from mailroom_local.template import Stack  # type: ignore[import-not-found, unused-ignore]

    with mock_aws():
        stack = Stack.load(TEMPLATE)
        tables: dict[str, str] = stack.provision().tables
        dynamodb = boto3.session.Session().client("dynamodb", region_name=stack.region)
        campaigns = CampaignRepository(tables["CampaignsTable"], client=dynamodb)
        now = iso(utcnow())
        campaign = Campaign(
            id=uuid.uuid4().hex,
            subject=SUBJECT,
            content=CONTENT,
            format=ContentFormat.MARKDOWN,
            status=CampaignStatus.DRAFT,
            created_at=now,
            updated_at=now,
        )
        campaigns.create(campaign)
        if campaigns.start(campaign.id, 4, now) is None:
            raise RuntimeError("the benchmark's campaign could not be started")
        key_schema = {
            name: [key["AttributeName"] for key in dynamodb.describe_table(TableName=name)["Table"]["KeySchema"]]
            for name in tables.values()
        }
        items = dynamodb.scan(TableName=tables["CampaignsTable"], ConsistentRead=True)["Items"]
        batch_size = next(source.batch_size for source in stack.sqs_sources if source.function == WORKER_FUNCTION)
    return Setup(
        results_table=tables["ResultsTable"],
        campaigns_table=tables["CampaignsTable"],
        subscribers_table=tables["SubscribersTable"],
        key_schema=key_schema,
        campaign_id=campaign.id,
        campaign_items=items,
        batch_size=batch_size,
    )


class Audience:
    """Synthetic subscribers, stored as the subscribers table holds them, and their campaign tasks."""

    def __init__(self, setup: Setup, first: int = 0) -> None:
        self.setup = setup
        self.store = Store(setup.key_schema)
        for item in setup.campaign_items:
            self.store.put(setup.campaigns_table, item)
        self._next = first
        self._tasks = 0

    def task(self, size: int) -> CampaignTask:
        recipients = []
        for index in range(self._next, self._next + size):
            sub = subscriber(index)
            self.store.put(self.setup.subscribers_table, to_item(sub.model_dump(mode="json")))
            recipients.append(Recipient(id=sub.id, email=sub.email, name=sub.name))
        self._next += size
        self._tasks += 1
        return CampaignTask(campaign_id=self.setup.campaign_id, task=f"0.{self._tasks}", recipients=recipients)

    def tasks(self, count: int, size: int) -> list[CampaignTask]:
        return [self.task(size) for _ in range(count)]

    def fake(self, account_rate: float, ses_latency: float = 0.05, dynamodb_latency: float = 0.0) -> FakeAws:
        return FakeAws(
            store=self.store,
            account_rate=account_rate,
            ses_latency=ses_latency,
            dynamodb_latency=dynamodb_latency,
            refused_updates=frozenset({self.setup.campaigns_table}),
        )


@dataclass
class Worker:
    """One newsletter worker execution environment."""

    sender: CampaignSender
    pacer: Pacer
    account_rate: AccountRate
    executor: ThreadPoolExecutor
    max_concurrency: int

    def invoke(self) -> None:
        """What ``lambda_handler`` does before its batch: this invocation's share of the rate."""
        self.pacer.set_rate(share_of(self.account_rate(), self.max_concurrency))

    def invoke_batch(self, tasks: list[CampaignTask], budget: Budget) -> list[TaskResult]:
        """One invocation with a batch of tasks, sent together as ``lambda_handler`` sends them."""
        self.invoke()
        results: list[TaskResult] = []
        for result in self.sender.process_many(tasks, budget):
            if isinstance(result, Exception):
                raise RuntimeError("a task failed in the benchmark") from result
            results.append(result)
        return results

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def build_worker(setup: Setup, fake: FakeAws, threads: int, max_concurrency: int, name: str = "worker") -> Worker:
    """Wired like functions/newsletter_worker/app.py; every client answered by ``fake``.

    Its send threads are called ``<name>-send_<n>``.
    """

    dynamodb = fake.install(client("dynamodb", CONFIG))  # one, shared, as the worker's adapters share theirs

    pacer = Pacer(rate=1.0)
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"{name}-send")
    sender = CampaignSender(
        results=CampaignResults(setup.results_table, setup.campaigns_table, client=dynamodb),
        campaigns=CampaignRepository(setup.campaigns_table, client=dynamodb),
        subscribers=SubscriberRepository(setup.subscribers_table, client=dynamodb),
        mailer=Mailer(client=fake.install(client("sesv2", SEND_CONFIG))),
        sender=SENDER,
        links=Links(PUBLIC_URL, lambda: LINK_TOKENS),
        pacer=pacer,
        executor=executor,
    )
    account_rate = AccountRate(client=fake.install(client("sesv2", CONFIG)))
    gc.freeze()  # as functions/newsletter_worker/app.py does at the end of its init
    return Worker(sender, pacer, account_rate, executor, max_concurrency)


def _check(outcomes: Counter[Outcome], expected: int) -> None:
    """The fakes must still fit the adapters: every recipient sent, nothing skipped or retried."""
    if outcomes[Outcome.SENT] != expected:
        raise RuntimeError(
            f"expected {expected} mails sent, got {dict(outcomes)}: bench/fake_aws.py no longer answers "
            "what the adapters ask"
        )


# ------------------------------------------------------------------------ 1. throughput
@dataclass(frozen=True)
class Throughput:
    threads: int
    ses_latency: float
    mails: int
    seconds: float
    cpu_seconds: float  # the whole process's, the fakes' included
    fake_cpu_seconds: float  # the fakes' own
    outcomes: Counter[Outcome]
    calls: Counter[str]

    @property
    def rate(self) -> float:
        return self.outcomes[Outcome.SENT] / self.seconds

    @property
    def cpu_per_mail_ms(self) -> float:
        """Mailroom's CPU per mail: the process's, without the fakes'."""
        return 1000 * (self.cpu_seconds - self.fake_cpu_seconds) / max(1, self.outcomes[Outcome.SENT])

    @property
    def cpu_busy(self) -> float:
        """Process CPU time / wall time (1.0 = one core busy all the time)."""
        return self.cpu_seconds / self.seconds


def measure_throughput(
    setup: Setup, tasks: int, per_task: int, threads: int, ses_latency: float = 0.05, dynamodb_latency: float = 0.0
) -> Throughput:
    """Send ``tasks`` x ``per_task`` recipients through one warm worker, in invocations of
    the template's batch size as the event source mapping delivers them; the account's rate
    is no limit."""
    audience = Audience(setup)
    warm_up = audience.task(per_task)
    work = audience.tasks(tasks, per_task)
    fake = audience.fake(UNLIMITED_RATE, ses_latency, dynamodb_latency)
    worker = build_worker(setup, fake, threads, DEFAULT_MAX_CONCURRENCY)
    try:
        # a warm environment: models loaded, content compiled
        _check(sum((r.outcomes for r in worker.invoke_batch([warm_up], NO_DEADLINE)), Counter()), per_task)
        fake.reset_counts()
        outcomes: Counter[Outcome] = Counter()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for start in range(0, len(work), setup.batch_size):
            for result in worker.invoke_batch(work[start : start + setup.batch_size], NO_DEADLINE):
                outcomes += result.outcomes
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        worker.close()
    _check(outcomes, tasks * per_task)
    return Throughput(threads, ses_latency, tasks * per_task, wall, cpu, fake.own_cpu, outcomes, Counter(fake.calls))


@dataclass(frozen=True)
class CpuCost:
    """Milliseconds of CPU per mail, by step: one thread, AWS answering at once."""

    steps: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.steps.values())

    @property
    def ceiling(self) -> float:
        """Mails per second one core (one GIL) can do at most."""
        return 1000 / self.total


def _per_call_ms(action: Callable[[int], object], count: int) -> float:
    """CPU milliseconds per call (this thread's CPU time: other work on the machine does not count)."""
    started = time.thread_time()
    for index in range(count):
        action(index)
    return 1000 * (time.thread_time() - started) / count


def measure_cpu_cost(setup: Setup, samples: int = 300, per_task: int = 50) -> CpuCost:
    """The CPU of one mail: the whole of ``process()`` (one thread, SES and DynamoDB instant),
    and the steps of it timed alone (the median of 3 runs each)."""
    whole = measure_throughput(setup, max(1, samples // per_task), per_task, threads=1, ses_latency=0.0)
    audience = Audience(setup)
    recipients = audience.task(samples).recipients
    fake = audience.fake(UNLIMITED_RATE, 0.0)
    worker = build_worker(setup, fake, 1, DEFAULT_MAX_CONCURRENCY)
    sender = worker.sender

    def mailroom_ms(action: Callable[[int], object], count: int = samples) -> float:
        """Milliseconds per call of ``action``, without the fakes' own CPU."""
        fake.reset_counts()
        spent = _per_call_ms(action, count)
        return spent - 1000 * fake.own_cpu / count

    try:
        campaign = sender.campaigns.get(setup.campaign_id)
        if campaign is None:
            raise RuntimeError("bench/fake_aws.py: the campaign cannot be read")
        renderer = sender.renderer(campaign)
        tags = {"kind": "campaign", "campaign": campaign.id, "subscriber": recipients[0].id}
        mails = [renderer.render(recipient, tags) for recipient in recipients]
        raws = [to_mime(mail, SENDER.address, SENDER.name) for mail in mails]
        now = iso(utcnow())
        steps: dict[str, Callable[[int], object]] = {
            "render (Jinja2)": lambda i: renderer.render(recipients[i], tags),
            "to_mime (email package)": lambda i: to_mime(mails[i], SENDER.address, SENDER.name),
            "claim: a DynamoDB write through botocore": lambda i: sender.results.claim(
                campaign.id, recipients[i], uuid.uuid4().hex, now
            ),
            "SendEmail through botocore": lambda i: sender.mailer.send(
                raws[i], SENDER.address, recipients[i].email, tags
            ),
        }
        resolved = [
            Resolution(r.id, r.email, DeliveryStatus.SENT, claim=uuid.uuid4().hex, message_id=f"0100{r.id}-000000")
            for r in recipients[:COMMIT_SIZE]
        ]
        commits: dict[str, Callable[[int], object]] = {
            f"commit: TransactWriteItems of {COMMIT_SIZE}, per mail": lambda _: sender.results.resolve(
                campaign.id, resolved, now
            ),
        }
        costs = {name: statistics.median(mailroom_ms(action) for _ in range(3)) for name, action in steps.items()}
        for name, action in commits.items():
            count = max(10, samples // COMMIT_SIZE)
            costs[name] = statistics.median(mailroom_ms(action, count) for _ in range(3)) / COMMIT_SIZE
    finally:
        worker.close()
    costs["the rest: reads, thread pool, process()"] = max(0.0, whole.cpu_per_mail_ms - sum(costs.values()))
    return CpuCost(costs)


# ------------------------------------------------------------------------ 2. pacing
@dataclass(frozen=True)
class Pacing:
    limit: int
    senders: int  # worker invocations at once, each in its own process
    seconds: float
    share: float  # each worker's pacer rate, share_of(limit, senders)
    accepted: int
    throttled: int
    throttled_returned: int  # what process() reported (TaskResult.throttled)
    handed_back: int  # throttled, failed transiently, and not started before the deadline
    peak_attempts: int  # most SendEmail calls within any one second, throttled ones too
    idle_seconds: float  # per worker, on average: time beyond its pacing interval with no send
    idle_gaps: float  # per worker, on average: gaps of more than 1.5 intervals between two sends
    boundary_ms: list[float]  # from an invocation's last send to the next invocation's first
    tasks: int  # tasks started by all workers
    cpu_busy: float  # per worker, on average: process CPU time / wall time
    outcomes: Counter[Outcome] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds

    @property
    def of_limit(self) -> float:
        return self.rate / self.limit

    @property
    def throttled_share(self) -> float:
        calls = self.accepted + self.throttled
        return self.throttled / calls if calls else 0.0


def _idle(arrivals: list[float], interval: float) -> tuple[float, int]:
    """Time lost to gaps longer than 1.5 pacing intervals between consecutive sends, and their number."""
    times = sorted(arrivals)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times) if later - earlier > 1.5 * interval]
    return sum(gap - interval for gap in gaps), len(gaps)


def _boundaries(attempts: list[tuple[float, str]], batch_of: dict[str, int]) -> list[float]:
    """Milliseconds from each invocation's (batch's) last send to the next one's first send."""
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for moment, recipient in attempts:
        batch = batch_of.get(recipient)
        if batch is not None:
            first[batch] = min(first.get(batch, math.inf), moment)
            last[batch] = max(last.get(batch, -math.inf), moment)
    return [1000 * (first[batch + 1] - last[batch]) for batch in sorted(last) if batch + 1 in first]


def _peak_window(arrivals: list[float]) -> int:
    times = sorted(arrivals)
    peak = start = 0
    for end, moment in enumerate(times):
        while times[start] <= moment - 1.0:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


@dataclass(frozen=True)
class _Job:
    setup: Setup
    index: int
    limit: int
    senders: int
    seconds: float
    threads: int
    ses_latency: float


def _pacing_worker(job: _Job, window: SendWindow, conn: Connection) -> None:
    """One worker invocation in its own process (a Lambda execution environment)."""
    per_task = 50
    audience = Audience(job.setup, first=job.index * 10_000_000)  # distinct recipients per worker
    warm_up = audience.task(2)
    # more recipients than can be sent in ``seconds``: the deadline, not the work, ends the run
    count = math.ceil(job.limit * job.seconds * 1.5 / job.senders / per_task) + job.setup.batch_size
    stream = audience.tasks(count, per_task)
    fake = audience.fake(float(job.limit), job.ses_latency)
    worker = build_worker(job.setup, fake, job.threads, job.senders)
    outcomes: Counter[Outcome] = Counter()
    totals: Counter[str] = Counter()
    try:
        _check(worker.invoke_batch([warm_up], NO_DEADLINE)[0].outcomes, 2)  # the window is not installed yet
        fake.reset_counts()
        fake.window = window
        conn.send("ready")
        start, deadline = conn.recv()
        time.sleep(max(0.0, start - time.monotonic()))
        cpu0 = time.process_time()
        budget = Budget(deadline)
        for first in range(0, len(stream), job.setup.batch_size):
            if budget.expired():
                break
            for result in worker.invoke_batch(stream[first : first + job.setup.batch_size], budget):
                totals["tasks"] += 1 if result.started else 0
                totals["throttled"] += len(result.throttled)
                totals["handed_back"] += len(result.throttled) + len(result.failed) + len(result.not_started)
                outcomes.update(result.outcomes)
        cpu = time.process_time() - cpu0
    finally:
        worker.close()
    conn.send(
        {
            "share": worker.pacer.rate,
            "accepted": list(fake.accepted),
            "attempts": [moment for moment, _ in fake.attempts],
            "boundaries": _boundaries(
                fake.attempts,
                {r.email: n // job.setup.batch_size for n, task in enumerate(stream) for r in task.recipients},
            ),
            "throttled": fake.throttled,
            "totals": dict(totals),
            "outcomes": {str(outcome): count for outcome, count in outcomes.items()},
            "cpu_busy": cpu / max(1e-9, time.monotonic() - start),
        }
    )
    conn.close()


def measure_pacing(
    setup: Setup, limit: int, senders: int, seconds: float, threads: int = DEFAULT_THREADS, ses_latency: float = 0.05
) -> Pacing:
    """``senders`` worker invocations at once, each in its own process at share_of(rate, senders),
    against one SES that accepts at most ``limit`` sends within any one second."""
    context = multiprocessing.get_context("spawn")
    window = SendWindow(limit, context)
    pipes = [context.Pipe() for _ in range(senders)]
    processes = [
        context.Process(
            target=_pacing_worker,
            args=(_Job(setup, index, limit, senders, seconds, threads, ses_latency), window, child),
            name=f"pacing-worker{index}",
        )
        for index, (_, child) in enumerate(pipes)
    ]
    for process in processes:
        process.start()
    try:
        for parent, _ in pipes:
            if not parent.poll(120) or parent.recv() != "ready":
                raise RuntimeError("a pacing worker did not start")
        start = time.monotonic() + 0.2
        for parent, _ in pipes:
            parent.send((start, start + seconds))
        reports: list[dict[str, Any]] = []
        for parent, _ in pipes:
            if not parent.poll(seconds + 120):
                raise RuntimeError("a pacing worker did not finish")
            reports.append(parent.recv())
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    idle = [_idle(report["attempts"], 1 / report["share"]) for report in reports]
    outcomes: Counter[Outcome] = Counter()
    totals: Counter[str] = Counter()
    for report in reports:
        outcomes.update({Outcome(name): count for name, count in report["outcomes"].items()})
        totals.update(report["totals"])
    return Pacing(
        limit=limit,
        senders=senders,
        seconds=seconds,
        share=reports[0]["share"],
        accepted=sum(len(report["accepted"]) for report in reports),
        throttled=sum(report["throttled"] for report in reports),
        throttled_returned=totals["throttled"],
        handed_back=totals["handed_back"],
        peak_attempts=_peak_window([moment for report in reports for moment in report["attempts"]]),
        idle_seconds=statistics.fmean(lost for lost, _ in idle),
        idle_gaps=statistics.fmean(gaps for _, gaps in idle),
        boundary_ms=[gap for report in reports for gap in report["boundaries"]],
        tasks=totals["tasks"],
        cpu_busy=statistics.fmean(report["cpu_busy"] for report in reports),
        outcomes=outcomes,
    )
