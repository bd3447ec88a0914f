"""template.yaml invariants that a deploy would not catch until it is too late."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

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


# ------------------------------------------------------------------------------ alarms
TOPIC = {"Ref": "AlarmTopic"}


def _alarms(stack: Stack) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in stack.template["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def _get_att(value: Any, attribute: str) -> str:
    """The resource of ``!GetAtt <resource>.<attribute>``."""
    assert isinstance(value, dict) and list(value) == ["Fn::GetAtt"], value
    resource, got = value["Fn::GetAtt"]
    assert got == attribute, value
    return str(resource)


def _watched(stack: Stack, namespace: str, metric: str, dimension: str) -> dict[str, dict[str, Any]]:
    """The alarms on ``namespace/metric`` by the resource their one dimension names."""
    watched: dict[str, dict[str, Any]] = {}
    for logical_id, alarm in _alarms(stack).items():
        if (alarm["Namespace"], alarm["MetricName"]) != (namespace, metric):
            continue
        (only,) = alarm["Dimensions"]
        assert only["Name"] == dimension, logical_id
        value = only["Value"]
        resource = _get_att(value, "QueueName") if dimension == "QueueName" else value["Ref"]
        assert resource not in watched, f"{resource} has two {metric} alarms"
        watched[resource] = alarm
    return watched


def _dead_letter_queues(stack: Stack) -> set[str]:
    """Every queue that holds what failed: redrive targets, on-failure destinations and the
    schedules' dead-letter queues (SAM creates those: QueueLogicalId, else <Function><Event>Queue)."""
    found: set[str] = set()
    for logical_id, resource in stack.template["Resources"].items():
        properties = resource.get("Properties") or {}
        if resource["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in properties:
            found.add(_get_att(properties["RedrivePolicy"]["deadLetterTargetArn"], "Arn"))
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        on_failure = (properties.get("EventInvokeConfig") or {}).get("DestinationConfig", {}).get("OnFailure")
        if on_failure and on_failure["Type"] == "SQS":
            found.add(_get_att(on_failure["Destination"], "Arn"))
        for name, event in (properties.get("Events") or {}).items():
            config = (event.get("Properties") or {}).get("DeadLetterConfig")
            if not config:
                continue
            if "Arn" in config:
                found.add(_get_att(config["Arn"], "Arn"))
            else:
                found.add(config.get("QueueLogicalId", f"{logical_id}{name}Queue"))
    return found


def test_every_alarm_notifies_the_alarm_topic_on_alarm_and_back_to_ok(stack: Stack) -> None:
    raw = stack.template["Resources"]
    assert raw["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    alarms = _alarms(stack)
    assert len(alarms) >= 15
    for logical_id, alarm in alarms.items():
        assert TOPIC in alarm["AlarmActions"], logical_id
        assert TOPIC in alarm["OKActions"], logical_id
        assert alarm["TreatMissingData"] == "notBreaching", logical_id
        assert len(alarm["AlarmDescription"]) > 40, logical_id
        assert "AlarmName" not in alarm, f"{logical_id}: a generated name, so stages can share an account"
    (statement,) = [
        s
        for s in raw["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow" and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert statement["Action"] == "sns:Publish" and statement["Resource"] == TOPIC
    assert raw["AlarmTopicPolicy"]["Properties"]["Topics"] == [TOPIC]
    subscription = raw["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {"TopicArn": TOPIC, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}
    assert stack.template["Outputs"]["AlarmTopicArn"]["Value"] == TOPIC


def test_no_subscription_without_an_alarm_email() -> None:
    assert not Stack.load(TEMPLATE).is_created("AlarmEmailSubscription")
    assert Stack.load(TEMPLATE, overrides={"AlarmEmail": "ops@example.com"}).is_created("AlarmEmailSubscription")


def test_every_dead_letter_queue_has_a_depth_alarm(stack: Stack) -> None:
    dead_letter_queues = _dead_letter_queues(stack)
    assert dead_letter_queues >= {
        "WelcomeDeadLetterQueue",
        "NewsletterDeadLetterQueue",
        "FanoutDeadLetterQueue",
        "DispatcherFailureQueue",
        "NewsletterDispatcherFunctionDailyNewsletterQueue",
        "NewsletterDispatcherFunctionRecoveryQueue",
    }
    watched = _watched(stack, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName")
    assert set(watched) == dead_letter_queues
    for queue, alarm in watched.items():
        settings = {key: alarm[key] for key in ("Statistic", "Period", "EvaluationPeriods", "Threshold")}
        assert settings == {"Statistic": "Maximum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 0}, queue
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold", queue


def test_every_queue_a_function_consumes_has_an_age_alarm(stack: Stack) -> None:
    consumed = {
        _get_att(event["Properties"]["Queue"], "Arn")
        for resource in stack.template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in (resource["Properties"].get("Events") or {}).values()
        if event["Type"] == "SQS"
    }
    assert consumed == {"WelcomeQueue", "NewsletterQueue", "FanoutQueue"}
    watched = _watched(stack, "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName")
    assert set(watched) == consumed
    for queue, alarm in watched.items():
        assert alarm["Threshold"] == {"Ref": "OldestMessageAgeAlarmSeconds"}, queue
        assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Maximum", 300, 2), queue
    assert Stack.load(TEMPLATE).parameters["OldestMessageAgeAlarmSeconds"] == "3600"


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_worker_function_has_an_errors_and_a_throttles_alarm(stack: Stack, metric: str) -> None:
    workers = {
        logical_id
        for logical_id, resource in stack.template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        and any(
            event["Type"] in ("SQS", "ScheduleV2", "Schedule")
            for event in (resource["Properties"].get("Events") or {}).values()
        )
    }
    assert workers == {
        "WelcomeWorkerFunction",
        "NewsletterWorkerFunction",
        "FanoutFunction",
        "NewsletterDispatcherFunction",
    }
    watched = _watched(stack, "AWS/Lambda", metric, "FunctionName")
    assert set(watched) == workers
    for function, alarm in watched.items():
        assert (alarm["Statistic"], alarm["Period"], alarm["Threshold"]) == ("Sum", 300, 0), function
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold", function


def _constant_metric_names(tree: ast.AST) -> set[str]:
    """The names of ``add_metric(name="<constant>", ...)`` calls in ``tree``."""
    return {
        keyword.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_metric"
        for keyword in node.keywords
        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str)
    }


def _metrics_emitted_by(folder: Path) -> set[str]:
    """The metric names a function's code emits: in its app.py, or in a layer function it calls."""
    app = (folder / "app.py").read_text()
    emitted = _constant_metric_names(ast.parse(app))
    for module in (ROOT / "layers/mailroom/mailroom").rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.FunctionDef) and re.search(rf"\b{node.name}\(", app):
                emitted |= _constant_metric_names(node)
    return emitted


def test_every_custom_metric_alarm_names_a_metric_and_dimensions_the_code_emits(stack: Stack) -> None:
    # Powertools (EMF) emits every metric of a function under one dimension set: its default
    # dimensions plus service. An alarm with another namespace, name or set never fires.
    namespace = stack.template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    custom = {key: alarm for key, alarm in _alarms(stack).items() if not alarm["Namespace"].startswith("AWS/")}
    assert {alarm["MetricName"] for alarm in custom.values()} >= {"MailsThrottled"}
    services = {
        stack.function_env(logical_id)["POWERTOOLS_SERVICE_NAME"]: spec.code_dir
        for logical_id, spec in stack.functions.items()
    }
    for logical_id, alarm in custom.items():
        assert alarm["Namespace"] == namespace, logical_id
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert dimensions.keys() == {"service", "task_type"}, logical_id
        folder = services[dimensions["service"]]
        app = (folder / "app.py").read_text()
        assert f'set_default_dimensions(task_type="{dimensions["task_type"]}")' in app, logical_id
        assert "add_dimension(" not in app, logical_id
        assert alarm["MetricName"] in _metrics_emitted_by(folder), logical_id
        # and Powertools serializes exactly that dimension set
        emf = EphemeralMetrics(namespace=namespace, service=dimensions["service"])
        emf.set_default_dimensions(task_type=dimensions["task_type"])
        emf.add_metric(name=alarm["MetricName"], unit=MetricUnit.Count, value=1)
        (directive,) = emf.serialize_metric_set()["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == alarm["Namespace"]
        assert [sorted(dimension_set) for dimension_set in directive["Dimensions"]] == [sorted(dimensions)]


def test_the_throttling_alarm_watches_the_newsletter_workers_sustained_ses_throttles(stack: Stack) -> None:
    alarm = stack.template["Resources"]["NewsletterMailsThrottledAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("Mailroom", "MailsThrottled")
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
        "service": "newsletter-worker",
        "task_type": "newsletter",
    }
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"], alarm["Threshold"]) == ("Sum", 300, 3, 100)


def test_the_alarm_topic_is_not_encrypted_with_the_aws_managed_key(stack: Stack) -> None:
    # CloudWatch cannot publish to a topic encrypted with alias/aws/sns: the alarms would be silent.
    properties = stack.template["Resources"]["AlarmTopic"].get("Properties") or {}
    assert properties.get("KmsMasterKeyId") != "alias/aws/sns"
