"""The runtime's AWS semantics, with a small throwaway stack (fast timeouts, tiny handlers).

Covers what the Mailroom stack cannot show quickly: redrive to the dead-letter queue after
maxReceiveCount, partial batch responses, invalid batch responses, handler errors, crashes
and timeouts (502 like API Gateway, environment restarted), the API Gateway event and
response mapping, a schedule's Input with Scheduler's context attributes, concurrent
invocations with ScalingConfig.MaximumConcurrency, PublicUrl set to the runtime's URL and
SES v2 GetAccount.
"""

from __future__ import annotations

import base64
import json
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailroom_local import Runtime
from mailroom_local.moto_ext import reported_max_send_rate
from tests.integration.conftest import http, wait_for

pytestmark = pytest.mark.integration

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  RecordDir:
    Type: String
  Stage:
    Type: String
    Default: test
  PublicUrl:
    Type: String
    Default: ""
  Concurrency:
    Type: Number
    Default: 2
Globals:
  Function:
    Runtime: python3.13
    Timeout: 3
    Environment:
      Variables:
        RECORD_DIR: !Ref RecordDir
        STAGE: !Ref Stage
        PUBLIC_URL: !Ref PublicUrl
Resources:
  JobsDeadLetterQueue:
    Type: AWS::SQS::Queue
  # Declared after the queue that uses it: the runtime must create it first anyway.
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt JobsDeadLetterQueue.Arn
        maxReceiveCount: 2
  Doomed:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt DoomedDeadLetterQueue.Arn
        maxReceiveCount: 3
  DoomedDeadLetterQueue:
    Type: AWS::SQS::Queue
  JobsFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: app.jobs
      Environment:
        Variables:
          QUEUE_URL: !Ref Jobs
      Events:
        JobsTasks:
          Type: SQS
          Properties:
            Queue: !GetAtt Jobs.Arn
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
  DoomedFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: app.doomed
      Events:
        DoomedTasks:
          Type: SQS
          Properties:
            Queue: !GetAtt Doomed.Arn
            BatchSize: 1
  Parallel:
    Type: AWS::SQS::Queue
  Serial:
    Type: AWS::SQS::Queue
  ParallelFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: app.slow
      Events:
        ParallelTasks:
          Type: SQS
          Properties:
            Queue: !GetAtt Parallel.Arn
            BatchSize: 1
            ScalingConfig:
              MaximumConcurrency: !Ref Concurrency
  SerialFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: app.slow
      Events:
        SerialTasks:
          Type: SQS
          Properties:
            Queue: !GetAtt Serial.Arn
            BatchSize: 1
  ApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: app.api
      Timeout: 1
      Events:
        Item:
          Type: Api
          Properties:
            Path: /items/{id}
            Method: any
        Files:
          Type: Api
          Properties:
            Path: /files/{path+}
            Method: GET
        Fixed:
          Type: Api
          Properties:
            Path: /items/special
            Method: get
  ReloadFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: reload/
      Handler: app.handler
  BrokenFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: broken/
      Handler: app.handler
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: app.tick
      Events:
        Tick:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(1 hour)
            Input: '{"arn": "<aws.scheduler.schedule-arn>", "at": "<aws.scheduler.scheduled-time>",
              "run": "<aws.scheduler.execution-id>", "attempt": "<aws.scheduler.attempt-number>"}'
        Later:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: cron(30 2 29 3 ? 2030)
            ScheduleExpressionTimezone: Europe/Berlin
"""

HANDLERS = """
import base64
import json
import os
import time
from pathlib import Path


def _record(name, value):
    with open(Path(os.environ["RECORD_DIR"]) / f"{name}.jsonl", "a") as out:
        out.write(json.dumps(value) + "\\n")


def jobs(event, context):
    failures = []
    for record in event["Records"]:
        _record("jobs", {"body": record["body"], "count": record["attributes"]["ApproximateReceiveCount"]})
        if record["body"].startswith("fail"):
            failures.append({"itemIdentifier": record["messageId"]})
        if record["body"].startswith("bogus"):
            failures.append({"itemIdentifier": "not-in-this-batch"})
    return {"batchItemFailures": failures}


def doomed(event, context):
    for record in event["Records"]:
        _record("doomed", {"body": record["body"], "count": record["attributes"]["ApproximateReceiveCount"],
                           "source": record["eventSource"], "arn": record["eventSourceARN"]})
    raise RuntimeError("this message can never be processed")


def slow(event, context):
    for record in event["Records"]:
        started = time.time()
        time.sleep(1.5)
        _record(context.function_name, {"body": record["body"], "start": started, "end": time.time(),
                                        "stream": context.log_stream_name})


def tick(event, context):
    _record("tick", event)
    return {"ticked": True}


def api(event, context):
    query = event["queryStringParameters"] or {}
    if query.get("mode") == "raise":
        raise ValueError("handler failed")
    if query.get("mode") == "exit":
        os._exit(7)
    if query.get("mode") == "sleep":
        time.sleep(5)
    if query.get("mode") == "malformed":
        return {"body": "no status code"}
    if query.get("mode") == "binary":
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Single": "one"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps({"event": event, "remaining": context.get_remaining_time_in_millis(),
                            "function": context.function_name, "env": {k: os.environ.get(k) for k in (
                                "STAGE", "PUBLIC_URL", "AWS_LAMBDA_FUNCTION_NAME", "AWS_ENDPOINT_URL",
                                "AWS_ACCESS_KEY_ID", "LAMBDA_TASK_ROOT", "AWS_REGION")}}),
    }
"""


RELOAD = """
def handler(event, context):
    return {{"version": {version}}}
"""


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stack")
    (root / "template.yaml").write_text(TEMPLATE)
    (root / "code").mkdir()
    (root / "code" / "app.py").write_text(textwrap.dedent(HANDLERS))
    (root / "records").mkdir()
    (root / "broken").mkdir()
    (root / "broken" / "app.py").write_text("import a_module_that_does_not_exist\n")
    (root / "reload").mkdir()
    (root / "reload" / "app.py").write_text(RELOAD.format(version=1))
    return root


SES_MAX_SEND_RATE = 42.0


@pytest.fixture(scope="module")
def runtime(stack_dir: Path) -> Iterator[Runtime]:
    rate_before = reported_max_send_rate()
    started = Runtime(
        stack_dir / "template.yaml",
        port=0,
        overrides={"RecordDir": str(stack_dir / "records")},
        ses_max_send_rate=SES_MAX_SEND_RATE,
    ).start()
    try:
        yield started
    finally:
        started.stop()
    assert reported_max_send_rate() == rate_before  # the runtime leaves moto's GetAccount as it found it


def records(stack_dir: Path, name: str) -> list[dict[str, Any]]:
    path = stack_dir / "records" / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def send(runtime: Runtime, queue: str, *bodies: str) -> None:
    sqs = runtime.client("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)


def drain(runtime: Runtime, queue: str) -> list[str]:
    sqs = runtime.client("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    bodies: list[str] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        bodies += [m["Body"] for m in messages]
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        )
    return bodies


def depth(runtime: Runtime, queue: str) -> tuple[int, int]:
    status = {q["name"]: q for q in http("GET", f"{runtime.url}/_local/queues").json()}[queue]
    return status["ApproximateNumberOfMessages"], status["ApproximateNumberOfMessagesNotVisible"]


def test_a_message_that_always_fails_ends_in_the_dlq_after_max_receive_count(runtime: Runtime, stack_dir: Path) -> None:
    send(runtime, "Doomed", "poison")
    assert wait_for(lambda: depth(runtime, "DoomedDeadLetterQueue")[0] == 1, timeout=15.0, interval=0.2)
    assert depth(runtime, "Doomed") == (0, 0)
    seen = records(stack_dir, "doomed")
    # Received and failed exactly maxReceiveCount (3) times, then moved by SQS's redrive policy.
    assert [r["count"] for r in seen] == ["1", "2", "3"]
    assert {r["source"] for r in seen} == {"aws:sqs"}
    assert {r["arn"] for r in seen} == {"arn:aws:sqs:us-east-1:123456789012:Doomed"}
    assert drain(runtime, "DoomedDeadLetterQueue") == ["poison"]


def test_partial_batch_failures_delete_only_the_successful_records(runtime: Runtime, stack_dir: Path) -> None:
    send(runtime, "Jobs", "ok-1", "fail-1", "ok-2")
    assert wait_for(lambda: depth(runtime, "JobsDeadLetterQueue")[0] == 1, timeout=15.0, interval=0.2)
    assert wait_for(lambda: depth(runtime, "Jobs") == (0, 0), timeout=5.0)
    seen = [r["body"] for r in records(stack_dir, "jobs")]
    assert seen.count("ok-1") == 1 and seen.count("ok-2") == 1  # deleted after the first success
    assert seen.count("fail-1") == 2  # maxReceiveCount
    assert drain(runtime, "JobsDeadLetterQueue") == ["fail-1"]


def test_an_invalid_batch_item_failure_fails_the_whole_batch(runtime: Runtime, stack_dir: Path) -> None:
    before = len(records(stack_dir, "jobs"))
    send(runtime, "Jobs", "bogus-1")
    assert wait_for(lambda: depth(runtime, "JobsDeadLetterQueue")[0] == 1, timeout=15.0, interval=0.2)
    seen = [r["body"] for r in records(stack_dir, "jobs")[before:]]
    assert seen == ["bogus-1", "bogus-1"]
    assert drain(runtime, "JobsDeadLetterQueue") == ["bogus-1"]


def test_the_api_event_and_response_mapping(runtime: Runtime) -> None:
    answer = http(
        "PUT",
        f"{runtime.url}/items/a%40b?tag=x&tag=y&single=1",
        body="héllo",
        headers={"Content-Type": "text/plain; charset=utf-8", "X-Custom": "yes"},
    )
    assert answer.status == 201, answer.text
    assert answer.headers["x-single"] == "one"
    assert answer.headers["x-amzn-requestid"]
    data = answer.json()
    event = data["event"]
    assert event["resource"] == "/items/{id}"
    assert event["path"] == "/items/a%40b" or event["path"] == "/items/a@b"
    assert event["httpMethod"] == "PUT"
    assert event["pathParameters"] == {"id": "a@b"}
    assert event["queryStringParameters"] == {"tag": "y", "single": "1"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["x", "y"], "single": ["1"]}
    assert event["headers"]["X-Custom"] == "yes"
    assert event["multiValueHeaders"]["X-Custom"] == ["yes"]
    assert event["body"] == "héllo" and event["isBase64Encoded"] is False
    assert event["stageVariables"] is None
    context = event["requestContext"]
    assert context["stage"] == "Prod"  # SAM's implicit API
    assert context["resourcePath"] == "/items/{id}" and context["httpMethod"] == "PUT"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["requestId"] and isinstance(context["requestTimeEpoch"], int)
    assert 0 < data["remaining"] <= 1000
    assert data["function"] == "ApiFunction"
    env = data["env"]
    assert env["STAGE"] == "test" and env["AWS_LAMBDA_FUNCTION_NAME"] == "ApiFunction"
    assert env["PUBLIC_URL"] == runtime.url  # PublicUrl: the runtime's URL, with the port it got
    assert env["AWS_ENDPOINT_URL"] == runtime.endpoint_url and env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["LAMBDA_TASK_ROOT"].endswith("code") and env["AWS_REGION"] == "us-east-1"

    # headers and multiValueHeaders are merged, as API Gateway does
    assert [v for k, v in answer.header_list if k.lower() == "set-cookie"] == ["a=1", "b=2"]


def test_literal_routes_win_and_greedy_paths_match(runtime: Runtime) -> None:
    special = http("GET", f"{runtime.url}/items/special").json()["event"]
    assert special["resource"] == "/items/special" and special["pathParameters"] is None
    files = http("GET", f"{runtime.url}/files/a/b/c.txt").json()["event"]
    assert files["resource"] == "/files/{path+}" and files["pathParameters"] == {"path": "a/b/c.txt"}
    assert http("POST", f"{runtime.url}/files/a").status == 403  # method not on the resource


def test_binary_bodies_travel_base64_encoded(runtime: Runtime) -> None:
    payload = bytes(range(256))
    answer = http(
        "POST", f"{runtime.url}/items/bin", body=payload, headers={"Content-Type": "application/octet-stream"}
    )
    event = answer.json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload
    binary = http("GET", f"{runtime.url}/items/x?mode=binary")
    assert binary.status == 200 and binary.body == payload


@pytest.mark.parametrize("mode", ["raise", "exit", "sleep", "malformed"])
def test_function_failures_are_502_and_the_next_request_works(runtime: Runtime, mode: str) -> None:
    answer = http("GET", f"{runtime.url}/items/x?mode={mode}")
    assert answer.status == 502
    assert answer.json() == {"message": "Internal server error"}
    assert http("GET", f"{runtime.url}/items/x").status == 201


def test_a_direct_invocation_reports_errors_like_lambda(runtime: Runtime) -> None:
    failed = runtime.invoke("ApiFunction", {"queryStringParameters": {"mode": "raise"}})
    assert not failed.ok
    assert failed.payload["errorType"] == "ValueError"
    assert failed.payload["errorMessage"] == "handler failed"
    timed_out = runtime.invoke("ApiFunction", {"queryStringParameters": {"mode": "sleep"}})
    assert timed_out.payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after" in timed_out.payload["errorMessage"]


def test_schedules_fire_with_schedulers_context_attributes(runtime: Runtime, stack_dir: Path) -> None:
    # rate() without a start date fires when the schedule is created (here: at start-up).
    ticks = wait_for(lambda: records(stack_dir, "tick"), timeout=5.0)
    assert ticks
    tick = ticks[0]
    assert tick["arn"] == "arn:aws:scheduler:us-east-1:123456789012:schedule/default/Tick"
    assert tick["at"].endswith("Z") and len(tick["at"]) == len("2026-11-28T10:00:00Z")
    assert tick["attempt"] == "1" and len(tick["run"]) == 36

    listing = {s["name"]: s for s in http("GET", f"{runtime.url}/_local/schedules").json()}
    # Evaluated in the schedule's time zone: 02:30 in Berlin (CET, before DST) is 01:30 UTC.
    assert listing["Later"]["next_fire_time"] == "2030-03-29T01:30:00Z"
    fired = http("POST", f"{runtime.url}/_local/schedules/Later")
    assert fired.status == 200 and fired.json() == {"ticked": True}
    later = records(stack_dir, "tick")[-1]
    assert later == {}  # a ScheduleV2 without Input sends {}


def test_code_changes_apply_on_the_next_invocation(runtime: Runtime, stack_dir: Path) -> None:
    assert runtime.invoke("ReloadFunction", {}).payload == {"version": 1}
    code = stack_dir / "reload" / "app.py"
    code.write_text(RELOAD.format(version=2))
    later = time.time() + 2  # a visibly newer modification time, whatever the file system's resolution
    os.utime(code, (later, later))
    assert runtime.invoke("ReloadFunction", {}).payload == {"version": 2}


def test_an_init_error_fails_each_invocation_like_lambda(runtime: Runtime) -> None:
    for _ in range(2):  # the init is retried on the next invocation
        failed = runtime.invoke("BrokenFunction", {})
        assert not failed.ok
        assert failed.payload["errorType"] == "Runtime.ImportModuleError"
        assert "a_module_that_does_not_exist" in failed.payload["errorMessage"]


def test_health_names_the_functions_that_failed_to_initialise(runtime: Runtime) -> None:
    runtime.invoke("BrokenFunction", {})
    health = http("GET", f"{runtime.url}/_local/health")
    assert health.status == 503
    report = health.json()
    assert report["status"] == "failing"
    assert list(report["functions"]) == ["BrokenFunction"]
    assert "Runtime.ImportModuleError" in report["functions"]["BrokenFunction"]


def test_maximum_concurrency_runs_invocations_at_once_and_without_it_one_at_a_time(
    runtime: Runtime, stack_dir: Path
) -> None:
    send(runtime, "Parallel", "p1", "p2")
    send(runtime, "Serial", "s1", "s2")
    assert wait_for(
        lambda: len(records(stack_dir, "ParallelFunction")) == 2 and len(records(stack_dir, "SerialFunction")) == 2,
        timeout=20.0,
        interval=0.2,
    )
    first, second = records(stack_dir, "ParallelFunction")
    assert first["start"] < second["end"] and second["start"] < first["end"]  # they overlap
    assert first["stream"] != second["stream"]  # in two execution environments
    first, second = sorted(records(stack_dir, "SerialFunction"), key=lambda r: r["start"])
    assert second["start"] >= first["end"]  # one at a time
    assert first["stream"] == second["stream"]  # in one environment
    assert len(runtime.sandboxes["ParallelFunction"].environments) == 2
    assert len(runtime.sandboxes["SerialFunction"].environments) == 1
    assert wait_for(lambda: depth(runtime, "Parallel") == (0, 0) and depth(runtime, "Serial") == (0, 0), timeout=5.0)


def test_public_url_is_the_runtimes_own_url(runtime: Runtime) -> None:
    assert runtime.stack.parameters["PublicUrl"] == runtime.url
    assert runtime.url.startswith("http://127.0.0.1:") and not runtime.url.endswith(":0")


def test_ses_get_account_answers_through_the_runtimes_moto(runtime: Runtime) -> None:
    quota = runtime.client("sesv2").get_account()["SendQuota"]
    assert quota["MaxSendRate"] == SES_MAX_SEND_RATE
    assert quota["Max24HourSend"] == 50000.0
