"""``make bench``: issue #3's measurements in one markdown report, printed and written to bench/results.md.

1. Worker throughput: one warm newsletter worker (``CampaignSender.process_many`` over
   ``--tasks`` x ``--per-task`` recipients, in invocations of the template's BatchSize, as
   the handler does) with the real adapters and botocore, AWS faked inside botocore, SES
   answering after ``--ses-ms``; the same with one thread (the sequential loop), other
   thread counts, and the CPU one mail costs, step by step.
2. Pacing: worker invocations, each in its own process at ``share_of(rate, n)``, against
   an SES that refuses a send beyond its rate within any one second (14/s, then 200/s).
3. Fan-out: ``--subscribers`` subscribers on the embedded runtime (moto), a campaign
   created and sent through the admin API, timed until its fan-out is done; the AWS
   requests it made, counted at the moto server.

Run ``python -m bench.run --help`` for the options. Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

# Only the standard library at the top: multiprocessing's "spawn" (the runtime's function
# sandboxes, the pacing workers) imports this module again in every child process, and the
# functions must import mailroom (its Powertools logger and metrics) only once their own
# environment is set.
if TYPE_CHECKING:
    from bench.fanout import Fanout
    from bench.worker import CpuCost, Pacing, Throughput

ROOT = Path(__file__).resolve().parents[1]
GOAL_THROUGHPUT = 500.0  # mails per second, one invocation
GOAL_OF_LIMIT = 0.95
GOAL_THROTTLED = 0.01
ISSUE_SEQUENTIAL = 20.0


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A markdown table's lines (bench.tracing prints its tables with it too)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _yes(condition: bool) -> str:
    return "yes" if condition else "**no**"


def _n(value: float) -> str:
    return f"{value:,.0f}"


# ------------------------------------------------------------------------------ the report
def _main_table(
    args: argparse.Namespace,
    batch_size: int,
    main: Throughput,
    sequential: Throughput,
    cpu: CpuCost,
    pacing: list[Pacing],
    fanout: Fanout | None,
) -> list[str]:
    to_mime = next((ms for step, ms in cpu.steps.items() if step.startswith("to_mime")), 0.0)
    rows: list[list[object]] = [
        [
            f"1. Worker throughput: one warm worker, {args.tasks} tasks x {args.per_task} recipients in "
            f"invocations of {batch_size} tasks, {main.threads} send threads, SES {args.ses_ms:g} ms, "
            f"DynamoDB {args.dynamodb_ms:g} ms",
            f"**{main.rate:,.0f} mails/s** ({_n(main.mails)} in {main.seconds:.2f} s; "
            f"CPU {main.cpu_busy:.0%} of one core, {main.cpu_per_mail_ms:.2f} ms per mail)",
            f">= {GOAL_THROUGHPUT:.0f}/s",
            _yes(main.rate >= GOAL_THROUGHPUT),
        ],
        [
            f"1. Sequential loop (the same worker with 1 send thread), {sequential.mails} recipients",
            f"{sequential.rate:,.1f} mails/s",
            f"the issue: about {ISSUE_SEQUENTIAL:.0f}/s",
            "-",
        ],
        [
            "1. CPU ceiling of one invocation: 1 / (CPU per mail), one core (the GIL)",
            f"{cpu.ceiling:,.0f} mails/s ({cpu.total:.2f} ms per mail; to_mime {to_mime:.2f} ms "
            f"= {to_mime / cpu.total:.0%})",
            f">= {GOAL_THROUGHPUT:.0f}/s",
            _yes(cpu.ceiling >= GOAL_THROUGHPUT),
        ],
    ]
    for run in pacing:
        who = "1 invocation" if run.senders == 1 else f"{run.senders} invocations at once"
        rows.append(
            [
                f"2. Pacing at {run.limit}/s: {who} (own processes), each at share_of({run.limit}, "
                f"{run.senders}) = {run.share:g}/s, {run.seconds:g} s",
                f"**{run.of_limit:.1%}** of the rate ({run.rate:.1f}/s), **{run.throttled_share:.2%} throttled** "
                f"({run.throttled} of {run.accepted + run.throttled} calls; {run.throttled_returned} handed back)",
                f">= {GOAL_OF_LIMIT:.0%}, <= {GOAL_THROTTLED:.0%}",
                _yes(run.of_limit >= GOAL_OF_LIMIT and run.throttled_share <= GOAL_THROTTLED),
            ]
        )
    if fanout is not None:
        requests = fanout.function_requests()
        total = sum(requests.values())
        per_k = 1000 / max(1, fanout.recipients)
        by_service = Counter[str]()
        for (service, _), count in requests.items():
            by_service[service] += count
        services = ", ".join(f"{service} {count * per_k:.1f}" for service, count in sorted(by_service.items()))
        rows += [
            [
                f"3. Fan-out of {_n(fanout.subscribers)} subscribers on the embedded runtime "
                f"({fanout.segments} segments), POST .../send until fanout_done",
                f"**{fanout.seconds:,.1f} s** ({fanout.per_second:,.0f} recipients/s); "
                f"recipients = {_n(fanout.recipients)}, {_n(fanout.tasks)} tasks queued"
                + ("" if fanout.done else f" - **not done after {args.fanout_timeout:g} s**"),
                "fan-out done, recipients = subscribers",
                _yes(fanout.done and fanout.recipients == fanout.subscribers),
            ],
            [
                "3. AWS requests of the fan-out per 1,000 recipients (functions only)",
                f"{total * per_k:.1f} ({services})",
                "-",
                "-",
            ],
        ]
    return _table(["measurement", "result", "goal", "met"], rows)


def _requests_table(fanout: Fanout | None, main: Throughput) -> list[str]:
    rows: list[list[object]] = []
    if fanout is not None:
        per_k = 1000 / max(1, fanout.recipients)
        for label, requests in (
            ("fan-out (admin + fan-out functions)", fanout.function_requests()),
            ("event source mappings (the runtime's pollers; time-dependent)", fanout.mapping_requests()),
        ):
            for (service, action), count in sorted(requests.items()):
                seconds = fanout.server_seconds.get((service, action), 0.0)
                rows.append([label, service, action, _n(count), f"{count * per_k:.2f}", f"{seconds:.1f}"])
    per_k = 1000 / max(1, main.mails)
    for call, count in sorted(main.calls.items()):
        service, action = call.split(".", 1)
        rows.append(
            [
                "sending (one worker, part 1; counted in botocore)",
                service,
                action,
                _n(count),
                f"{count * per_k:.2f}",
                "-",
            ]
        )
    return _table(["phase", "service", "action", "requests", "per 1,000 recipients", "moto time (s)"], rows)


def _threads_table(runs: list[Throughput]) -> list[str]:
    rows = [
        [
            run.threads,
            f"{run.ses_latency * 1000:g} ms",
            _n(run.mails),
            f"{run.rate:,.1f}",
            f"{run.cpu_busy:.0%}",
            f"{run.cpu_per_mail_ms:.2f}",
        ]
        for run in sorted(runs, key=lambda run: (run.ses_latency, run.threads))
    ]
    return _table(["send threads", "SES latency", "mails", "mails/s", "CPU (of one core)", "CPU ms per mail"], rows)


def _cpu_table(cpu: CpuCost) -> list[str]:
    rows = [[step, f"{ms:.3f}", f"{ms / cpu.total:.0%}"] for step, ms in cpu.steps.items()]
    rows.append(["**total**", f"**{cpu.total:.3f}**", f"ceiling {cpu.ceiling:,.0f} mails/s"])
    return _table(["step (one thread, AWS answering at once)", "CPU ms per mail", "share"], rows)


def _pacing_table(pacing: list[Pacing]) -> list[str]:
    rows = [
        [
            f"{run.limit}/s",
            run.senders,
            f"{run.share:g}/s",
            run.tasks,
            run.accepted,
            run.throttled,
            run.handed_back,
            run.peak_attempts,
            f"{run.idle_seconds:.2f} s in {run.idle_gaps:g} gaps",
            f"{statistics.fmean(run.boundary_ms):.0f} ms" if run.boundary_ms else "-",
            f"{run.cpu_busy:.0%}",
        ]
        for run in pacing
    ]
    return _table(
        [
            "SES limit",
            "invocations",
            "pacer each",
            "tasks",
            "sent",
            "throttled",
            "handed back",
            "most calls in any 1 s",
            "idle per invocation",
            "between invocations (last send to next first send)",
            "CPU per invocation",
        ],
        rows,
    )


def _waves(args: argparse.Namespace, batch_size: int) -> str:
    """The bound the batch structure puts on one invocation, whatever the CPU."""
    sends = batch_size * args.per_task
    waves = -(-sends // args.threads)
    bound = sends / (waves * args.ses_ms / 1000) if args.ses_ms else float("inf")
    return (
        f"An invocation's {batch_size} x {args.per_task} = {sends} sends run in ceil({sends}/{args.threads}) = "
        f"{waves} wave(s) of at least {args.ses_ms:g} ms, and the next invocation starts only when the last "
        f"answer is in: with {args.threads} threads a worker does at most {bound:,.0f} mails/s even with no CPU "
        "cost at all."
    )


METHOD = [
    "## How it is measured",
    "",
    "- Worker: `CampaignSender` wired as `functions/newsletter_worker/app.py` wires it (real adapters, real "
    "botocore clients with Mailroom's configs, AccountRate -> share_of -> Pacer), each invocation's batch "
    "(the template's BatchSize) sent together with `process_many`, as the handler does. AWS is faked "
    "inside botocore (`before-send` hooks, `bench/fake_aws.py`): requests are serialized, signed and "
    "parsed as for AWS (and validated where the client config says so); reads answer "
    "items the real adapters wrote into moto beforehand; SES answers after the configured latency. CPU "
    "figures leave out the fakes' own CPU (measured with `time.thread_time`).",
    "- Pacing: each invocation is a process of its own (a Lambda environment has its own CPU); one SES "
    "window in shared memory refuses a send beyond the limit within any one second. Throttled sends are "
    "released and handed back by `process()` (counted in `TaskResult.throttled`, `failed`, `not_started`); handed back "
    "also counts the recipients not started before the run's deadline.",
    "- Fan-out: `mailroom_local.Runtime` (moto server in this process, functions in child processes), the "
    "newsletter worker's poller stopped; requests counted at moto's WSGI app by SigV4 service and "
    "X-Amz-Target, the benchmark's own requests (seeding, polling) left out.",
]


def code_commit(*paths: str) -> str:
    """HEAD's short hash, and whether the code under test (``paths``) has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *paths], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    return f"{commit}{' + uncommitted changes in the code under test' if dirty else ''}"


def _environment() -> str:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"commit {code_commit('layers', 'functions', 'local', 'template.yaml')}; "
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load}"
    )


# ------------------------------------------------------------------------------ running
# Issue #9's measurements, each a module of its own (python -m bench.<name> runs one alone):
# measure(...) -> result, table(result) -> markdown lines, summary_rows(result) -> goal rows.
EXTRA_HELP = {
    "coldstart": "the cold start (handler import time against a bare boto3 import)",
    "size": "the package size (sam build output)",
    "latency": "the sign-up to outbox latency",
    "cost": "the AWS requests per 1,000 recipients and the modeled cost",
}
EXTRA_TITLES = {
    "coldstart": "Cold start",
    "size": "Package size",
    "latency": "Latency: sign-up to the outbox",
    "cost": "Cost",
}


def _extras(args: argparse.Namespace) -> list[tuple[str, list[str], list[tuple[str, str, str, str]]]]:
    """Issue #9's measurements that are not skipped: (name, table lines, goal rows)."""
    import importlib

    measured = []
    for name, what in EXTRA_HELP.items():
        if getattr(args, f"skip_{name}"):
            continue
        module = importlib.import_module(f"bench.{name}")
        _log(f"{name}: {what}")
        if name == "coldstart":
            result = module.measure(args.coldstart_runs)
        elif name == "latency":
            result = module.measure(args.latency_signups)
        elif name == "cost":
            result = module.measure(args.cost_subscribers)
        else:
            result = module.measure()
        measured.append((name, module.table(result), list(module.summary_rows(result))))
    return measured


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000, help="fan-out size (default 100000)")
    parser.add_argument(
        "--fanout-timeout",
        type=float,
        default=300.0,
        help="give up on the fan-out after this (s; keeps make bench under 10 minutes)",
    )
    parser.add_argument("--skip-fanout", action="store_true", help="measure only 1 and 2")
    for name, what in EXTRA_HELP.items():
        parser.add_argument(f"--skip-{name}", action="store_true", help=f"leave out {what}")
    parser.add_argument("--coldstart-runs", type=int, default=9, help="import samples per handler (default 9)")
    parser.add_argument("--latency-signups", type=int, default=200, help="sign-ups of the latency run (default 200)")
    parser.add_argument("--cost-subscribers", type=int, default=2000, help="recipients of the cost run (default 2000)")
    parser.add_argument("--tasks", type=int, default=20, help="tasks per throughput run (default 20)")
    parser.add_argument("--per-task", type=int, default=50, help="recipients per task (default 50)")
    parser.add_argument("--threads", type=int, default=0, help="send threads (default: the worker's SEND_THREADS)")
    parser.add_argument(
        "--also-threads", type=int, nargs="*", default=[8, 16, 32, 64], help="other thread counts to compare"
    )
    parser.add_argument("--sequential-tasks", type=int, default=2, help="tasks for the 1-thread run (default 2)")
    parser.add_argument("--ses-ms", type=float, default=50.0, help="SES SendEmail latency (default 50)")
    parser.add_argument("--dynamodb-ms", type=float, default=0.0, help="DynamoDB latency (default 0: instant)")
    parser.add_argument("--pacing-low", type=float, default=20.0, help="seconds of the 14/s pacing runs")
    parser.add_argument("--pacing-high", type=float, default=5.0, help="seconds of the 200/s pacing runs")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.fanout import measure_fanout
    from bench.worker import (
        DEFAULT_MAX_CONCURRENCY,
        DEFAULT_THREADS,
        TEMPLATE,
        measure_cpu_cost,
        measure_pacing,
        measure_throughput,
        prepare,
    )
    from mailroom.pacing import SHARE_OF_RATE

    args = _arguments(argv)
    args.threads = args.threads or DEFAULT_THREADS
    started = time.monotonic()
    environment_before = _environment()
    ses, dynamodb = args.ses_ms / 1000, args.dynamodb_ms / 1000

    _log("preparing the tables and a campaign (moto, in-process)")
    setup = prepare()
    _log(f"1. worker throughput: {args.tasks} x {args.per_task} recipients, {args.threads} threads")
    main_run = measure_throughput(setup, args.tasks, args.per_task, args.threads, ses, dynamodb)
    _log("1. the sequential loop (1 thread)")
    sequential = measure_throughput(setup, args.sequential_tasks, args.per_task, 1, ses, dynamodb)
    others = []
    for threads in args.also_threads:
        if threads not in (args.threads, 1):
            _log(f"1. {threads} threads")
            others.append(measure_throughput(setup, args.tasks, args.per_task, threads, ses, dynamodb))
    _log("1. CPU per mail, step by step")
    instant = measure_throughput(setup, args.tasks, args.per_task, args.threads, 0.0, 0.0)
    cpu = measure_cpu_cost(setup)

    pacing: list[Pacing] = []
    for limit, seconds in ((14, args.pacing_low), (200, args.pacing_high)):
        for senders in (1, DEFAULT_MAX_CONCURRENCY):
            _log(f"2. pacing at {limit}/s, {senders} invocation(s), {seconds:g} s")
            pacing.append(measure_pacing(setup, limit, senders, seconds, args.threads, ses))

    fanout: Fanout | None = None
    if not args.skip_fanout:
        _log(f"3. fan-out of {args.subscribers:,} subscribers on the embedded runtime")
        fanout = measure_fanout(TEMPLATE, args.subscribers, args.fanout_timeout)

    extras = _extras(args)

    command = " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])])
    goals = [row for _, _, rows in extras for row in rows]
    lines = [
        "# Mailroom benchmarks (issues #3 and #9)",
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, `{command}`",
        "",
        f"Machine: {environment_before} (at the start; other work on the machine shows in the timings).",
        "",
        *_main_table(args, setup.batch_size, main_run, sequential, cpu, pacing, fanout),
        "",
        *(["## Issue #9's goals", "", *_table(["measurement", "result", "goal", "met"], goals), ""] if goals else []),
        "## AWS requests by service",
        "",
        *_requests_table(fanout, main_run),
        "",
        "## Worker: send threads (one invocation, the account's rate no limit)",
        "",
        *_threads_table([main_run, sequential, *others, instant]),
        "",
        _waves(args, setup.batch_size),
        "",
        "## Worker: CPU per mail",
        "",
        *_cpu_table(cpu),
        "",
        "## Pacing",
        "",
        f"SES refuses a SendEmail beyond its limit within any one second (HTTP 429 TooManyRequestsException); "
        f"each invocation paces to share_of(rate, n) = rate x {SHARE_OF_RATE} / n. "
        "Idle: time beyond the pacing interval in gaps of more than 1.5 intervals between two sends.",
        "",
        *_pacing_table(pacing),
    ]
    if fanout is not None:
        steps = fanout.steps
        lines += [
            "",
            "## Fan-out",
            "",
            f"Seeding {_n(fanout.subscribers)} subscribers (BatchWriteItem, 4 threads): {fanout.seed_seconds:.1f} s. "
            f"Fan-out steps: {len(steps)}, {sum(steps) / 1000:.1f} s in all "
            f"(longest {max(steps, default=0) / 1000:.1f} s); moto's time answering the fan-out's requests: "
            f"{sum(s for k, s in fanout.server_seconds.items() if k in fanout.function_requests()):.1f} s "
            f"(Scan {fanout.server_seconds.get(('dynamodb', 'Scan'), 0.0):.1f} s, SendMessageBatch "
            f"{fanout.server_seconds.get(('sqs', 'SendMessageBatch'), 0.0):.1f} s). The runtime runs the "
            "fan-out function one invocation at a time (its SQS event has no MaximumConcurrency), so the "
            "segments' steps ran one after the other.",
        ]
        if fanout.errors:
            lines += ["", "Errors in the runtime's log:", "", *(f"    {line}" for line in fanout.errors[:20])]
    for name, table_lines, _ in extras:
        lines += ["", f"## {EXTRA_TITLES[name]}", "", *table_lines]
    lines += ["", *METHOD, "", f"Total: {time.monotonic() - started:.0f} s; machine at the end: {_environment()}."]
    report = "\n".join(lines) + "\n"
    print(report)
    args.output.write_text(report)
    _log(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
