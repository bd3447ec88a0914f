"""template.yaml invariants that a deploy would not catch until it is too late."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mailroom_local.template import Stack
from tests.support import EVENTS, ROOT, TEMPLATE


@pytest.fixture(scope="module")
def stack() -> Stack:
    return Stack.load(TEMPLATE)


def test_every_function_is_python313_on_arm64_with_both_layers(stack: Stack) -> None:
    raw = stack.template
    globals_ = raw["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert globals_["Architectures"] == ["arm64"]
    assert {layer["Ref"] for layer in globals_["Layers"]} == {"MailroomLayer", "DependenciesLayer"}
    for logical_id, resource in raw["Resources"].items():
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            assert resource["Metadata"]["BuildMethod"] == "makefile", logical_id
            assert resource["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_every_sqs_source_reports_batch_item_failures_and_its_queue_has_a_dlq(stack: Stack) -> None:
    sources = stack.sqs_sources
    assert {source.function for source in sources} == {
        "WelcomeWorkerFunction",
        "NewsletterWorkerFunction",
        "FanoutFunction",
        "SesEventsFunction",
    }
    queues = {str(stack.get_att(q.logical_id, "Arn")): q for q in stack.queues.values()}
    for source in sources:
        assert source.report_batch_item_failures, source.function
        queue = queues[source.queue_arn]
        redrive = json.loads(queue.attributes["RedrivePolicy"])
        assert int(redrive["maxReceiveCount"]) >= 5
        assert redrive["deadLetterTargetArn"] in queues
        # the visibility timeout is at least six times the worker's timeout (AWS's advice)
        timeout = stack.functions[source.function].timeout
        assert int(queue.attributes["VisibilityTimeout"]) >= 6 * timeout, source.function


def test_the_newsletter_schedule_is_a_time_zone_aware_schedule_v2(stack: Stack) -> None:
    schedule = next(s for s in stack.schedules if s.name == "DailyNewsletter")
    assert schedule.event_type == "ScheduleV2"
    assert schedule.function == "NewsletterDispatcherFunction"
    assert schedule.expression == "cron(0 10 * * ? *)"
    assert schedule.timezone == "UTC"
    assert schedule.input and "<aws.scheduler.scheduled-time>" in schedule.input


def test_overridden_schedule_parameters_reach_the_schedule() -> None:
    stack = Stack.load(
        TEMPLATE, overrides={"NewsletterSchedule": "cron(30 7 ? * MON-FRI *)", "NewsletterTimezone": "Europe/Berlin"}
    )
    schedule = next(s for s in stack.schedules if s.name == "DailyNewsletter")
    assert (schedule.expression, schedule.timezone) == ("cron(30 7 ? * MON-FRI *)", "Europe/Berlin")


def test_the_api_has_the_registration_and_admin_routes(stack: Stack) -> None:
    routes = {(r.method.upper(), r.path): r.function for r in stack.routes}
    for public in [("POST", "/subscriptions"), ("GET", "/subscriptions/confirm"), ("GET", "/unsubscribe")]:
        assert routes.pop(public) == "RegistrationFunction"
    assert routes.pop(("POST", "/unsubscribe")) == "RegistrationFunction"
    assert routes.pop(("POST", "/auth/sign-in")) == "AuthFunction"
    assert routes.pop(("POST", "/auth/new-password")) == "AuthFunction"
    assert set(routes) == {
        ("GET", "/admin/subscribers"),
        ("POST", "/admin/subscribers/import"),
        ("GET", "/admin/subscribers/export"),
        ("GET", "/admin/subscribers/{id}"),
        ("DELETE", "/admin/subscribers/{id}"),
        ("POST", "/admin/campaigns"),
        ("GET", "/admin/campaigns"),
        ("POST", "/admin/campaigns/preview"),
        ("GET", "/admin/campaigns/{id}"),
        ("PATCH", "/admin/campaigns/{id}"),
        ("POST", "/admin/campaigns/{id}/send"),
        ("POST", "/admin/campaigns/{id}/cancel"),
        ("POST", "/admin/campaigns/{id}/preview"),
        ("POST", "/admin/campaigns/{id}/test"),
        ("GET", "/admin/campaigns/{id}/recipients"),
        ("GET", "/admin/dead-letters"),
        ("POST", "/admin/dead-letters/redrive"),
        ("GET", "/admin/metrics"),
    }
    assert set(routes.values()) == {"AdminFunction"}


def test_the_worker_caps_its_concurrency_and_paces_to_that_share(stack: Stack) -> None:
    overridden = Stack.load(TEMPLATE, overrides={"WorkerMaximumConcurrency": "7", "MaxSendRate": "40"})
    source = next(s for s in overridden.sqs_sources if s.function == "NewsletterWorkerFunction")
    raw = overridden.template["Resources"]["NewsletterWorkerFunction"]["Properties"]["Events"]["NewsletterTasks"]
    assert raw["Properties"]["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "WorkerMaximumConcurrency"}
    assert source.queue_arn.endswith(":NewsletterQueue")
    env = overridden.function_env("NewsletterWorkerFunction")
    assert (env["WORKER_MAX_CONCURRENCY"], env["MAX_SEND_RATE"]) == ("7", "40")


def test_mail_links_use_the_public_url_or_else_the_parameter_with_the_distributions_url() -> None:
    mailers = ("WelcomeWorkerFunction", "NewsletterWorkerFunction", "AdminFunction")
    default = Stack.load(TEMPLATE)
    for function in mailers:
        env = default.function_env(function)
        assert env["PUBLIC_URL"] == "", function  # empty: read the parameter
        assert env["PUBLIC_URL_PARAMETER"] == "/mailroom-local/public-url", function
    parameter = default.resolve(default.resources["PublicUrlParameter"]["Properties"])
    assert parameter["Name"] == "/mailroom-local/public-url"
    assert parameter["Value"].startswith("https://") and parameter["Value"].endswith(".cloudfront.net")
    given = Stack.load(TEMPLATE, overrides={"PublicUrl": "https://news.example.com"})
    for function in mailers:
        assert given.function_env(function)["PUBLIC_URL"] == "https://news.example.com", function
    assert given.resolve(given.resources["PublicUrlParameter"]["Properties"])["Value"] == "https://news.example.com"


def test_every_function_has_a_folder_an_app_and_a_sample_event_used_by_a_test(stack: Stack) -> None:
    tests = "\n".join(path.read_text() for path in (ROOT / "tests").rglob("test_*.py"))
    for spec in stack.functions.values():
        assert spec.handler_file.is_file(), spec.logical_id
        assert not (spec.code_dir / "requirements.txt").exists(), "dependencies belong in the layer"
        folder = spec.code_dir.name
        events = sorted(path.name for path in EVENTS.glob(f"{folder}_*.json"))
        assert events, f"no sample event for {spec.logical_id}"
        for event in events:
            assert f'"{event}"' in tests, f"events/{event} is used by no test"


def test_every_function_logs_to_its_own_log_group_with_retention(stack: Stack) -> None:
    raw = stack.template
    log_groups = {key for key, r in raw["Resources"].items() if r["Type"] == "AWS::Logs::LogGroup"}
    used = set()
    for logical_id in stack.functions:
        group = raw["Resources"][logical_id]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert group in log_groups, logical_id
        assert "RetentionInDays" in raw["Resources"][group]["Properties"]
        used.add(group)
    assert used | {"ApiAccessLogGroup"} == log_groups  # one each (and the API's access log), none orphaned
    assert "RetentionInDays" in raw["Resources"]["ApiAccessLogGroup"]["Properties"]


def test_policies_name_actions_not_crud_templates_on_tables(stack: Stack) -> None:
    # least privilege: no function may Scan/Query/BatchWrite more than its code does
    raw = stack.template
    for logical_id in stack.functions:
        policies = raw["Resources"][logical_id]["Properties"].get("Policies", [])  # AuthFunction needs none
        names = {next(iter(policy)) for policy in policies if isinstance(policy, dict)}
        assert not names & {"DynamoDBCrudPolicy", "DynamoDBReadPolicy", "DynamoDBWritePolicy"}, logical_id


def test_no_managed_full_access_policies() -> None:
    text = TEMPLATE.read_text()
    assert "FullAccess" not in text
    assert "AdministratorAccess" not in text


def test_the_runtime_provides_boto3_so_the_layer_does_not_ship_it() -> None:
    requirements = (ROOT / "layers/dependencies/requirements.txt").read_text().lower()
    assert not re.search(r"^(boto3|botocore)\b", requirements, re.MULTILINE)


@pytest.mark.parametrize(
    "output", ["ApiUrl", "WelcomeQueueUrl", "NewsletterQueueUrl", "SubscribersTableName", "ResultsTableName"]
)
def test_outputs_that_tests_and_operators_read(stack: Stack, output: str) -> None:
    raw = stack.template
    assert output in raw["Outputs"]


def test_handler_files_exist_only_as_the_template_says() -> None:
    folders = {path.name for path in (ROOT / "functions").iterdir() if path.is_dir()}
    declared = {Path(spec.code_dir).name for spec in Stack.load(TEMPLATE).functions.values()}
    assert folders == declared


def test_the_layer_lock_pins_every_top_level_package_at_its_version() -> None:
    def pins(name: str) -> dict[str, str]:
        found = {}
        for line in (ROOT / "layers/dependencies" / name).read_text().splitlines():
            requirement = line.split("#", 1)[0].strip()
            if requirement:
                package, _, version = requirement.partition("==")
                found[package.strip().lower()] = version.strip()
        return found

    top, locked = pins("requirements.in"), pins("requirements.txt")
    assert top
    assert all(version for version in locked.values()), "every locked package is pinned"
    assert {package: locked.get(package) for package in top} == top


def test_ses_events_go_through_a_queue_to_batches_of_the_function(stack: Stack) -> None:
    resources = stack.template["Resources"]
    rule = resources["SesFeedbackRule"]["Properties"]
    assert resources["SesFeedbackRule"]["Type"] == "AWS::Events::Rule"
    assert rule["EventBusName"] == "default"
    assert rule["EventPattern"]["detail"] == {
        "mail": {"tags": {"ses:configuration-set": [{"Ref": "ConfigurationSet"}]}}
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["SesEventsQueue", "Arn"]}
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["SesEventsDeadLetterQueue", "Arn"]}
    # the queue: encrypted, redriven to the dead-letter queue (whose alarm stays meaningful)
    queue = resources["SesEventsQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["SesEventsDeadLetterQueue", "Arn"]}
    # only EventBridge, and only this rule, may send to it (and to its dead-letter queue)
    for policy_id, queue_id in (
        ("SesEventsQueuePolicy", "SesEventsQueue"),
        ("SesEventsDeadLetterQueuePolicy", "SesEventsDeadLetterQueue"),
    ):
        policy = resources[policy_id]["Properties"]
        assert policy["Queues"] == [{"Ref": queue_id}]
        (statement,) = policy["PolicyDocument"]["Statement"]
        assert (statement["Effect"], statement["Principal"], statement["Action"]) == (
            "Allow",
            {"Service": "events.amazonaws.com"},
            "sqs:SendMessage",
        )
        assert statement["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]}
        assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["SesFeedbackRule", "Arn"]}}}
    # the function: batches of up to 100 from the queue, a few seconds to fill them, item failures
    function = resources["SesEventsFunction"]["Properties"]
    assert "EventInvokeConfig" not in function  # no asynchronous invocations any more
    ((name, event),) = function["Events"].items()
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["SesEventsQueue", "Arn"]}
    assert event["Properties"]["BatchSize"] == 100
    assert 1 <= event["Properties"]["MaximumBatchingWindowInSeconds"] <= 10
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (source,) = [s for s in stack.sqs_sources if s.function == "SesEventsFunction"]
    assert (source.event, source.batch_size, source.report_batch_item_failures) == (name, 100, True)


def test_the_functions_traces_are_a_sample(stack: Stack) -> None:
    (logical_id,) = [k for k, r in stack.template["Resources"].items() if r["Type"] == "AWS::XRay::SamplingRule"]
    rule = stack.template["Resources"][logical_id]["Properties"]["SamplingRule"]
    assert rule["ServiceName"] == {"Fn::Sub": "${AWS::StackName}-*"}  # CloudFormation's function names
    assert rule["ReservoirSize"] in (0, 1)
    assert 0.01 <= rule["FixedRate"] <= 0.05
    assert rule["Priority"] < 10000  # before the default rule
    assert rule["Version"] == 1
