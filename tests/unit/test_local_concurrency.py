"""Concurrency of SQS event sources: ScalingConfig.MaximumConcurrency, reserved concurrency,
the poller's threads and the pool of execution environments behind them.

The end-to-end check (a runtime, a queue, a sleeping handler) is in
tests/integration/test_runtime_semantics.py.
"""

from __future__ import annotations

import io
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailroom_local.cfn import loads_template
from mailroom_local.console import Console
from mailroom_local.pollers import LOCAL_CONCURRENCY_LIMIT, SqsPoller, plan_concurrency
from mailroom_local.sandbox import Invocation, SandboxPool
from mailroom_local.template import FunctionSpec, SqsSourceSpec, Stack, TemplateError

TEMPLATE = """
Parameters:
  WorkerConcurrency:
    Type: Number
    Default: 4
Globals:
  Function:
    Runtime: python3.13
    ReservedConcurrentExecutions: 20
Resources:
  Work:
    Type: AWS::SQS::Queue
  Other:
    Type: AWS::SQS::Queue
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      ReservedConcurrentExecutions: 3
      Events:
        Scaled:
          Type: SQS
          Properties:
            Queue: !GetAtt Work.Arn
            ScalingConfig:
              MaximumConcurrency: !Ref WorkerConcurrency
        Plain:
          Type: SQS
          Properties:
            Queue: !GetAtt Other.Arn
  Api:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
"""


def stack(template: str = TEMPLATE, overrides: dict[str, str] | None = None) -> Stack:
    return Stack(loads_template(template), base_dir=Path("/project"), overrides=overrides)


def function(logical_id: str, reserved: int | None = None) -> FunctionSpec:
    return FunctionSpec(
        logical_id=logical_id,
        name=logical_id,
        code_dir=Path("/project/src"),
        handler="app.handler",
        runtime="python3.13",
        timeout=3,
        memory_size=128,
        environment={},
        reserved_concurrency=reserved,
    )


def source(
    function_id: str, event: str, maximum: int | None = None, *, enabled: bool = True, batch_size: int = 1
) -> SqsSourceSpec:
    return SqsSourceSpec(
        function=function_id,
        event=event,
        queue_arn=f"arn:aws:sqs:us-east-1:123456789012:{event}",
        batch_size=batch_size,
        batching_window=0.0,
        report_batch_item_failures=False,
        enabled=enabled,
        maximum_concurrency=maximum,
    )


# ------------------------------------------------------------------------- the template
def test_scaling_config_and_reserved_concurrency_are_read_with_intrinsics_and_globals() -> None:
    parsed = stack()
    sources = {s.event: s for s in parsed.sqs_sources}
    assert sources["Scaled"].maximum_concurrency == 4  # a Ref to a Number parameter
    assert sources["Plain"].maximum_concurrency is None
    functions = parsed.functions
    assert functions["Worker"].reserved_concurrency == 3  # the function wins over Globals
    assert functions["Api"].reserved_concurrency == 20
    assert stack(overrides={"WorkerConcurrency": "2"}).sqs_sources[0].maximum_concurrency == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [("1", "Lambda accepts 2 to 1000"), ("1001", "Lambda accepts 2 to 1000"), ("many", "must be an integer")],
)
def test_maximum_concurrency_is_validated_like_a_deploy(value: str, message: str) -> None:
    template = TEMPLATE.replace("Type: Number\n    Default: 4", "Type: String\n    Default: '4'")
    with pytest.raises(TemplateError, match=message):
        stack(template, {"WorkerConcurrency": value}).sqs_sources  # noqa: B018


def test_negative_reserved_concurrency_is_an_error() -> None:
    with pytest.raises(TemplateError, match="cannot be negative"):
        stack(TEMPLATE.replace("ReservedConcurrentExecutions: 3", "ReservedConcurrentExecutions: -1")).functions  # noqa: B018


def test_a_template_without_scaling_config_is_unchanged() -> None:
    plain = TEMPLATE.replace("ScalingConfig:", "Tags:").replace("MaximumConcurrency:", "Size:")
    parsed = stack(plain)
    assert all(s.maximum_concurrency is None for s in parsed.sqs_sources)


# ----------------------------------------------------------------------------- the plan
def test_without_scaling_config_a_source_runs_one_invocation_at_a_time() -> None:
    plan = plan_concurrency({"F": function("F"), "G": function("G")}, [source("F", "Tasks")])
    assert plan.sources == {("F", "Tasks"): 1}
    assert plan.environments == {"F": 1, "G": 1}
    assert plan.notes == []


def test_maximum_concurrency_sets_the_threads_and_the_environments() -> None:
    plan = plan_concurrency({"F": function("F")}, [source("F", "Tasks", 2), source("F", "More", 3)])
    assert plan.sources == {("F", "Tasks"): 2, ("F", "More"): 3}
    assert plan.environments == {"F": 5}  # the sources share the function's environments
    assert plan.notes == []


def test_reserved_concurrency_bounds_each_source_and_the_function() -> None:
    plan = plan_concurrency({"F": function("F", reserved=3)}, [source("F", "Tasks", 5), source("F", "More", 2)])
    assert plan.sources == {("F", "Tasks"): 3, ("F", "More"): 2}
    assert plan.environments == {"F": 3}  # five wanted, three allowed: the rest wait (Lambda throttles)


def test_reserved_concurrency_zero_is_not_polled() -> None:
    plan = plan_concurrency({"F": function("F", reserved=0)}, [source("F", "Tasks", 4)])
    assert plan.sources == {("F", "Tasks"): 0}
    assert plan.environments == {"F": 1}
    assert plan.notes == ["F.Tasks: not polled, ReservedConcurrentExecutions is 0 (Lambda would throttle it)"]


def test_the_local_limit_caps_sources_and_environments_and_says_so() -> None:
    plan = plan_concurrency({"F": function("F")}, [source("F", "Tasks", 50), source("F", "More", 2)])
    assert plan.sources == {("F", "Tasks"): LOCAL_CONCURRENCY_LIMIT, ("F", "More"): 2}
    assert plan.environments == {"F": LOCAL_CONCURRENCY_LIMIT}
    assert plan.notes == [
        f"F.Tasks: MaximumConcurrency 50 runs as {LOCAL_CONCURRENCY_LIMIT} concurrent invocations locally",
        f"F: 10 concurrent invocations share {LOCAL_CONCURRENCY_LIMIT} execution environments locally",
    ]


def test_disabled_sources_are_left_out() -> None:
    plan = plan_concurrency({"F": function("F")}, [source("F", "Tasks", 4, enabled=False)])
    assert plan.sources == {}
    assert plan.environments == {"F": 1}


# --------------------------------------------------------------------------- the poller
class FakeSqs:
    """Just enough of an SQS client for a poller: receive (no visibility timeout) and delete."""

    def __init__(self, bodies: list[str]) -> None:
        self._lock = threading.Lock()
        self._messages = [{"MessageId": str(uuid.uuid4()), "ReceiptHandle": body, "Body": body} for body in bodies]
        self.deleted: list[str] = []

    def receive_message(self, *, MaxNumberOfMessages: int, **_: Any) -> dict[str, Any]:
        with self._lock:
            batch, self._messages = self._messages[:MaxNumberOfMessages], self._messages[MaxNumberOfMessages:]
        if not batch:
            time.sleep(0.02)  # a short long poll
        return {"Messages": batch}

    def delete_message_batch(self, *, Entries: list[dict[str, str]], **_: Any) -> dict[str, Any]:
        with self._lock:
            self.deleted += [entry["ReceiptHandle"] for entry in Entries]
        return {"Successful": Entries}


def run_poller(concurrency: int, bodies: list[str]) -> dict[str, tuple[float, float]]:
    """Feed ``bodies`` (one per batch) to a handler that takes 0.3 s; the (start, end) of each."""
    sqs = FakeSqs(bodies)
    spans: dict[str, tuple[float, float]] = {}

    def invoke(event: Any) -> Invocation:
        started = time.monotonic()
        time.sleep(0.3)
        for record in event["Records"]:
            spans[record["body"]] = (started, time.monotonic())
        return Invocation(str(uuid.uuid4()), True, None, 300.0)

    poller = SqsPoller(
        source("F", "Tasks"),
        queue_url="https://queue",
        queue_name="Tasks",
        sqs=sqs,
        invoke=invoke,
        region="us-east-1",
        console=Console(io.StringIO()),
        concurrency=concurrency,
    )
    poller.start()
    try:
        deadline = time.monotonic() + 10
        while sorted(sqs.deleted) != sorted(bodies) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        poller.stop()
        poller.join(timeout=5)
    assert sorted(sqs.deleted) == sorted(bodies)
    return spans


def overlap(first: tuple[float, float], second: tuple[float, float]) -> bool:
    return first[0] < second[1] and second[0] < first[1]


def test_a_poller_with_concurrency_two_runs_two_batches_at_once() -> None:
    spans = run_poller(2, ["a", "b"])
    assert overlap(spans["a"], spans["b"])


def test_a_poller_without_concurrency_runs_one_batch_at_a_time() -> None:
    spans = run_poller(1, ["a", "b"])
    assert not overlap(spans["a"], spans["b"])


# ----------------------------------------------------------------------------- the pool
HANDLER = """
import time


def handler(event, context):
    started = time.time()
    time.sleep(event["sleep"])
    return {"start": started, "end": time.time(), "stream": context.log_stream_name}
"""


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(textwrap.dedent(HANDLER))
    return tmp_path


class Pools:
    """Makes pools of the sleeping handler (no AWS needed) and stops them after the test."""

    def __init__(self, code_dir: Path) -> None:
        self.output = io.StringIO()
        self.pools: list[SandboxPool] = []
        self.spec = FunctionSpec(
            logical_id="Sleeper",
            name="Sleeper",
            code_dir=code_dir,
            handler="app.handler",
            runtime="python3.13",
            timeout=10,
            memory_size=128,
            environment={},
        )

    def __call__(self, size: int) -> SandboxPool:
        pool = SandboxPool(
            self.spec,
            size=size,
            endpoint_url="http://127.0.0.1:9",
            region="us-east-1",
            account_id="123456789012",
            console=Console(self.output),
        )
        self.pools.append(pool)
        pool.start()
        assert pool.wait_ready(30) is None
        return pool


@pytest.fixture
def pool_of(code_dir: Path) -> Iterator[Pools]:
    pools = Pools(code_dir)
    yield pools
    for pool in pools.pools:
        pool.stop()


def invoke_together(pool: SandboxPool, count: int, sleep: float) -> list[Invocation]:
    results: list[Invocation] = []
    lock = threading.Lock()

    def one() -> None:
        invocation = pool.invoke({"sleep": sleep})
        with lock:
            results.append(invocation)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(r.ok for r in results), [r.payload for r in results]
    return results


def test_a_pool_of_two_runs_two_invocations_at_once_in_two_environments(pool_of: Pools) -> None:
    pool = pool_of(2)
    first, second = invoke_together(pool, 2, 0.5)
    assert overlap((first.payload["start"], first.payload["end"]), (second.payload["start"], second.payload["end"]))
    assert first.payload["stream"] != second.payload["stream"]  # one log stream per environment
    assert len(pool.environments) == 2
    assert [e.label for e in pool.environments] == ["Sleeper", "Sleeper#2"]
    assert "[Sleeper#2]" in pool_of.output.getvalue()  # the second environment's lines are told apart
    # A third invocation reuses a warm environment instead of starting a third.
    assert pool.invoke({"sleep": 0}).init_ms is None
    assert len(pool.environments) == 2


def test_a_pool_of_one_runs_one_invocation_at_a_time(pool_of: Pools) -> None:
    pool = pool_of(1)
    first, second = invoke_together(pool, 2, 0.3)
    assert not overlap((first.payload["start"], first.payload["end"]), (second.payload["start"], second.payload["end"]))
    assert len(pool.environments) == 1


def test_a_stopped_pool_fails_invocations_like_a_stopping_runtime(pool_of: Pools) -> None:
    pool = pool_of(1)
    pool.stop()
    stopped = pool.invoke({"sleep": 0})
    assert not stopped.ok and stopped.payload["errorType"] == "Runtime.Stopped"


def test_a_pool_needs_one_environment() -> None:
    with pytest.raises(ValueError, match="at least one"):
        SandboxPool(
            function("F"),
            size=0,
            endpoint_url="http://127.0.0.1:9",
            region="us-east-1",
            account_id="123456789012",
            console=Console(io.StringIO()),
        )


def test_the_reports_name_the_environment(pool_of: Pools) -> None:
    pool = pool_of(2)
    invoke_together(pool, 2, 0.2)
    reports = [line for line in pool_of.output.getvalue().splitlines() if "REPORT" in line]
    assert {line.split("[", 1)[1].split("]", 1)[0] for line in reports} == {"Sleeper", "Sleeper#2"}
    assert all(" ok duration " in line for line in reports)
