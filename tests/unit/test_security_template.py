"""Security invariants of template.yaml (issue #7, docs/security-infrastructure.md).

Encryption at rest and TLS, API throttling, the sign-up rate-limit table, least privilege,
no secret in an environment variable or an output, and checkov's skips with their reasons.

Each invariant is a function of the raw template that returns what it finds wrong. The tests
run it on template.yaml (it must find nothing) and on a copy with one thing broken (it must
find exactly that), so a check that no longer looks at anything fails too.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from mailroom_local.template import Stack
from tests.support import ROOT, TEMPLATE

Template = dict[str, Any]

DOC = ROOT / "docs" / "security-infrastructure.md"
API = "MailroomApi"
RATE_LIMITS = "RateLimitsTable"
# Actions that have no resource-level permissions: IAM accepts only Resource "*" for them.
# Actions IAM authorizes only on "*" (the Service Authorization Reference lists no resource type for them).
NO_RESOURCE_LEVEL = {"ses:GetAccount", "cloudwatch:GetMetricData"}
# SAM policy templates a function may use: each grants its actions on the one resource it names.
SAM_POLICY_TEMPLATES = {"SQSSendMessagePolicy"}


@pytest.fixture(scope="module")
def stack() -> Stack:
    return Stack.load(TEMPLATE)


@pytest.fixture
def raw(stack: Stack) -> Template:
    """A deep copy of the parsed template, for the tests that break something in it."""
    return copy.deepcopy(stack.template)


# ----------------------------------------------------------------------------- helpers
def of_type(raw: Template, *types: str) -> dict[str, dict[str, Any]]:
    return {key: r for key, r in raw["Resources"].items() if r.get("Type") in types}


def props(raw: Template, logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = raw["Resources"][logical_id].setdefault("Properties", {})
    return properties


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def functions(raw: Template) -> dict[str, dict[str, Any]]:
    return of_type(raw, "AWS::Serverless::Function")


def references(value: Any) -> set[str]:
    """Every logical id (or parameter) that ``value`` refers to: Ref, GetAtt, ${X} and ${X.Attr} in Sub."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(str(inner[0] if isinstance(inner, list) else inner.split(".")[0]))
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                found |= {m.group(1) for m in re.finditer(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z.]+)?\}", str(text))}
                if isinstance(inner, list):
                    found |= references(inner[1:])
            else:
                found |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= references(inner)
    return {name for name in found if not name.startswith("AWS::")}


def environment(raw: Template, function: str) -> dict[str, Any]:
    """A function's environment variables, Globals merged (the function's win), unresolved."""
    globals_ = ((raw.get("Globals") or {}).get("Function") or {}).get("Environment", {}).get("Variables", {})
    own = (props(raw, function).get("Environment") or {}).get("Variables") or {}
    return {**globals_, **own}


def statements(raw: Template, function: str) -> Iterator[dict[str, Any]]:
    for policy in props(raw, function).get("Policies") or []:
        if isinstance(policy, dict):
            yield from policy.get("Statement", [])


def is_get_att(value: Any, resource: str, attribute: str = "Arn") -> bool:
    return value in ({"Fn::GetAtt": [resource, attribute]}, {"Fn::GetAtt": f"{resource}.{attribute}"})


# ------------------------------------------------------------------ encryption at rest
def unencrypted(raw: Template) -> list[str]:
    """Queues, tables, topics and buckets stored without encryption (or under a key their writers cannot use)."""
    found = []
    for key, queue in of_type(raw, "AWS::SQS::Queue").items():
        properties = queue.get("Properties") or {}
        if properties.get("SqsManagedSseEnabled") is not True and not properties.get("KmsMasterKeyId"):
            found.append(f"queue {key}")
    for key, table in of_type(raw, "AWS::DynamoDB::Table").items():
        if ((table.get("Properties") or {}).get("SSESpecification") or {}).get("SSEEnabled") is not True:
            found.append(f"table {key}")
    for key, topic in of_type(raw, "AWS::SNS::Topic").items():
        if not (topic.get("Properties") or {}).get("KmsMasterKeyId"):
            found.append(f"topic {key}")
    for key, bucket in of_type(raw, "AWS::S3::Bucket").items():
        rules = ((bucket.get("Properties") or {}).get("BucketEncryption") or {}).get(
            "ServerSideEncryptionConfiguration"
        ) or []
        if not any((rule.get("ServerSideEncryptionByDefault") or {}).get("SSEAlgorithm") for rule in rules):
            found.append(f"bucket {key}")
    # An AWS managed key (alias/aws/...) lets no service principal use it: EventBridge could
    # not deliver to such a queue, CloudWatch could not publish to such a topic.
    for key, resource in of_type(raw, "AWS::SQS::Queue", "AWS::SNS::Topic").items():
        if str((resource.get("Properties") or {}).get("KmsMasterKeyId", "")).startswith("alias/aws/"):
            found.append(f"{key} under an AWS managed key")
    return found


def no_tasks_queue_sam_generates(raw: Template) -> list[str]:
    """Schedules' dead-letter queues that SAM would generate (undeclared, so unchecked here)."""
    found = []
    for key, function in functions(raw).items():
        for name, event in ((function.get("Properties") or {}).get("Events") or {}).items():
            config = (event.get("Properties") or {}).get("DeadLetterConfig")
            if config and "Arn" not in config:
                found.append(f"{key}.{name}")
    return found


def publishers_the_key_refuses(raw: Template) -> list[str]:
    """(topic, service) pairs where a service publishes to an encrypted topic whose key policy
    does not let it encrypt (kms:GenerateDataKey*) and decrypt (kms:Decrypt)."""
    publishers: dict[str, set[str]] = {topic: set() for topic in of_type(raw, "AWS::SNS::Topic")}
    for policy in of_type(raw, "AWS::SNS::TopicPolicy").values():
        properties = policy["Properties"]
        for statement in properties["PolicyDocument"]["Statement"]:
            service = (statement.get("Principal") or {}).get("Service") if statement["Effect"] == "Allow" else None
            if service and "sns:Publish" in as_list(statement["Action"]):
                for topic in properties["Topics"]:
                    publishers[topic["Ref"]] |= set(as_list(service))
    for alarm in of_type(raw, "AWS::CloudWatch::Alarm").values():
        for action in [*alarm["Properties"].get("AlarmActions", []), *alarm["Properties"].get("OKActions", [])]:
            if isinstance(action, dict) and action.get("Ref") in publishers:
                publishers[action["Ref"]].add("cloudwatch.amazonaws.com")
    found: list[str] = []
    for topic, services in publishers.items():
        key_id = props(raw, topic).get("KmsMasterKeyId")
        key = next(iter(references(key_id)), None) if isinstance(key_id, dict) else None
        if key is None or raw["Resources"].get(key, {}).get("Type") != "AWS::KMS::Key":
            found.extend(f"{topic}: {service} (no customer managed key)" for service in sorted(services))
            continue
        allowed: set[str] = set()
        for statement in props(raw, key)["KeyPolicy"]["Statement"]:
            actions = set(as_list(statement["Action"]))
            if statement["Effect"] == "Allow" and {"kms:Decrypt", "kms:GenerateDataKey*"} <= actions:
                allowed |= set(as_list((statement.get("Principal") or {}).get("Service", [])))
        found.extend(f"{topic}: {service}" for service in sorted(services - allowed))
    return found


def buckets_without_tls_only(raw: Template) -> list[str]:
    found = []
    for bucket in of_type(raw, "AWS::S3::Bucket"):
        resources = [{"Fn::GetAtt": [bucket, "Arn"]}, {"Fn::Sub": f"${{{bucket}.Arn}}/*"}]
        denies = [
            statement
            for policy in of_type(raw, "AWS::S3::BucketPolicy").values()
            if policy["Properties"]["Bucket"] == {"Ref": bucket}
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            if statement["Effect"] == "Deny"
            and statement.get("Principal") == "*"
            and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        if not any(
            "s3:*" in as_list(d["Action"]) and all(r in as_list(d["Resource"]) for r in resources) for d in denies
        ):
            found.append(bucket)
    return found


def test_every_queue_table_topic_and_bucket_is_encrypted_at_rest(stack: Stack) -> None:
    raw = stack.template
    assert unencrypted(raw) == []
    assert no_tasks_queue_sam_generates(raw) == []
    # every queue the alarms and functions name is declared here, so the loop above saw it
    assert len(of_type(raw, "AWS::SQS::Queue")) >= 10
    assert set(of_type(raw, "AWS::DynamoDB::Table")) >= {RATE_LIMITS, "SubscribersTable", "ResultsTable"}


def test_encryption_checks_find_what_is_missing(raw: Template) -> None:
    del props(raw, "WelcomeQueue")["SqsManagedSseEnabled"]
    del props(raw, RATE_LIMITS)["SSESpecification"]
    props(raw, "SesEventsDeadLetterQueue")["KmsMasterKeyId"] = "alias/aws/sqs"
    del props(raw, "WebBucket")["BucketEncryption"]
    assert unencrypted(raw) == [
        "queue WelcomeQueue",
        f"table {RATE_LIMITS}",
        "bucket WebBucket",
        "SesEventsDeadLetterQueue under an AWS managed key",
    ]
    props(raw, "AlarmTopic")["KmsMasterKeyId"] = "alias/aws/sns"
    assert "AlarmTopic under an AWS managed key" in unencrypted(raw)
    del props(raw, "AlarmTopic")["KmsMasterKeyId"]
    assert "topic AlarmTopic" in unencrypted(raw)
    events = props(raw, "NewsletterDispatcherFunction")["Events"]
    events["Recovery"]["Properties"]["DeadLetterConfig"] = {"Type": "SQS"}
    assert no_tasks_queue_sam_generates(raw) == ["NewsletterDispatcherFunction.Recovery"]


def test_the_alarm_topics_key_lets_every_publisher_use_it_and_rotates(stack: Stack) -> None:
    raw = stack.template
    topic = props(raw, "AlarmTopic")
    assert is_get_att(topic["KmsMasterKeyId"], "AlarmTopicKey")
    key = props(raw, "AlarmTopicKey")
    assert key["EnableKeyRotation"] is True
    assert publishers_the_key_refuses(raw) == []
    # the key's policy grants nothing to anyone outside the account but CloudWatch's two actions
    for statement in key["KeyPolicy"]["Statement"]:
        principal = statement["Principal"]
        assert principal != "*" and principal.get("AWS") != "*", statement
        if "Service" in principal:
            assert set(as_list(statement["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}, statement


def test_a_publisher_the_key_refuses_is_found(raw: Template) -> None:
    props(raw, "AlarmTopicPolicy")["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish", "Resource": "*"}
    )
    assert publishers_the_key_refuses(raw) == ["AlarmTopic: events.amazonaws.com"]
    # the alarms publish even without the topic policy's statement
    props(raw, "AlarmTopicKey")["KeyPolicy"]["Statement"] = [
        s for s in props(raw, "AlarmTopicKey")["KeyPolicy"]["Statement"] if "Service" not in s["Principal"]
    ]
    props(raw, "AlarmTopicPolicy")["PolicyDocument"]["Statement"] = []
    assert publishers_the_key_refuses(raw) == ["AlarmTopic: cloudwatch.amazonaws.com"]


def test_every_bucket_refuses_requests_without_tls(stack: Stack, raw: Template) -> None:
    assert of_type(stack.template, "AWS::S3::Bucket")
    assert buckets_without_tls_only(stack.template) == []
    props(raw, "WebBucketPolicy")["PolicyDocument"]["Statement"] = [
        s for s in props(raw, "WebBucketPolicy")["PolicyDocument"]["Statement"] if s["Effect"] != "Deny"
    ]
    assert buckets_without_tls_only(raw) == ["WebBucket"]


def test_every_log_group_keeps_its_logs_for_log_retention_days(stack: Stack) -> None:
    groups = of_type(stack.template, "AWS::Logs::LogGroup")
    assert "ApiAccessLogGroup" in groups
    for key, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, key


# ------------------------------------------------------------------- checkov's skips
def checkov_skips(raw: Template) -> list[tuple[str, str, str]]:
    """(resource, check id, comment) of every inline skip."""
    return [
        (key, str(skip.get("id", "")), str(skip.get("comment") or ""))
        for key, resource in raw["Resources"].items()
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip") or []
    ]


def unexplained_skips(raw: Template) -> list[str]:
    found = []
    seen: set[tuple[str, str]] = set()
    for key, check, comment in checkov_skips(raw):
        if not re.fullmatch(r"CKV2?_AWS_\d+", check):
            found.append(f"{key}: {check!r} is no check id")
        if len(comment.split()) < 12:
            found.append(f"{key} {check}: no reason written")
        if (key, check) in seen:
            found.append(f"{key} {check}: skipped twice")
        seen.add((key, check))
    return found


def test_every_checkov_skip_says_why(stack: Stack) -> None:
    skips = checkov_skips(stack.template)
    assert len(skips) >= 50
    assert unexplained_skips(stack.template) == []
    # a skip waives one check on one resource: none of them is a blanket waiver elsewhere
    for resource in stack.template["Resources"].values():
        assert set((resource.get("Metadata") or {}).get("checkov") or {}) <= {"skip"}


def test_a_skip_without_a_reason_is_found(raw: Template) -> None:
    skips = raw["Resources"]["WebBucket"]["Metadata"]["checkov"]["skip"]
    skips.append({"id": "CKV_AWS_19"})
    skips.append({"id": "CKV_AWS_21", "comment": "not needed"})
    skips.append({"id": "all", "comment": "x " * 20})
    assert unexplained_skips(raw) == [
        "WebBucket CKV_AWS_19: no reason written",
        "WebBucket CKV_AWS_21: no reason written",
        "WebBucket CKV_AWS_21: skipped twice",
        "WebBucket: 'all' is no check id",
    ]


def test_the_note_lists_every_skip_of_the_template(stack: Stack) -> None:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("|")]
    for key, check, _ in checkov_skips(stack.template):
        assert any(re.search(rf"\b{key}\b", row) and re.search(rf"\b{check}\b", row) for row in rows), (
            f"{DOC.name} has no table row for {key} {check}"
        )


# -------------------------------------------------------------------------- throttling
def method_settings(raw: Template) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["ResourcePath"], s["HttpMethod"]): s for s in props(raw, API)["MethodSettings"]}


THROTTLING = {
    ("/*", "*"): ("ApiThrottlingRateLimit", "ApiThrottlingBurstLimit"),
    ("/~1subscriptions", "POST"): ("SignUpThrottlingRateLimit", "SignUpThrottlingBurstLimit"),
    ("/~1auth~1sign-in", "POST"): ("SignInThrottlingRateLimit", "SignInThrottlingBurstLimit"),
}


def test_the_stage_and_the_public_write_methods_are_throttled_by_parameters(stack: Stack) -> None:
    raw = stack.template
    settings = method_settings(raw)
    assert set(settings) == set(THROTTLING)
    parameters = raw["Parameters"]
    stage_rate, stage_burst = (float(parameters[name]["Default"]) for name in THROTTLING[("/*", "*")])
    for where, (rate, burst) in THROTTLING.items():
        assert settings[where]["ThrottlingRateLimit"] == {"Ref": rate}, where
        assert settings[where]["ThrottlingBurstLimit"] == {"Ref": burst}, where
        for name in (rate, burst):
            assert parameters[name]["Type"] == "Number" and parameters[name]["MinValue"] >= 1, name
            assert len(parameters[name]["Description"]) > 40, name
        if where != ("/*", "*"):  # tighter than the stage
            assert float(parameters[rate]["Default"]) < stage_rate, where
            assert float(parameters[burst]["Default"]) < stage_burst, where


def test_each_method_limit_names_a_route_of_the_api(stack: Stack) -> None:
    # a method setting's path has its slashes as ~1; one that names no route limits nothing
    routes = {(route.method.upper(), route.path) for route in stack.routes}
    for path, method in method_settings(stack.template):
        if path != "/*":
            assert (method, path.replace("~1", "/").removeprefix("/")) in routes, path


def test_throttling_overrides_reach_the_method_settings() -> None:
    overrides = {"SignUpThrottlingRateLimit": "2", "SignUpThrottlingBurstLimit": "4", "ApiThrottlingRateLimit": "30"}
    overridden = Stack.load(TEMPLATE, overrides=overrides)
    resolved = overridden.resolve(overridden.template["Resources"][API]["Properties"]["MethodSettings"])
    limits = {
        (s["ResourcePath"], s["HttpMethod"]): (s["ThrottlingRateLimit"], s["ThrottlingBurstLimit"]) for s in resolved
    }
    assert limits[("/~1subscriptions", "POST")] == ("2", "4")
    assert limits[("/*", "*")] == ("30", "100")
    assert limits[("/~1auth~1sign-in", "POST")] == ("1", "5")


def test_the_api_writes_an_access_log_of_json_lines_without_tokens_or_addresses(stack: Stack) -> None:
    raw = stack.template
    api = raw["Resources"][API]
    setting = api["Properties"]["AccessLogSetting"]
    assert is_get_att(setting["DestinationArn"], "ApiAccessLogGroup")
    line = json.loads(re.sub(r"\$context\.[A-Za-z.]+", "x", setting["Format"]))
    assert {"requestId", "ip", "method", "resource", "status", "error"} <= set(line)
    fmt = setting["Format"]
    assert "$context.resourcePath" in fmt
    # the path and query string carry subscriber ids and link tokens; claims.email is personal data
    for leak in ("$context.path", "querystring", "$input", "claims.email", "$context.authorizer.claims.username"):
        assert leak not in fmt, leak
    # API Gateway logs with the account's role: the stage is created after it is set
    assert api["DependsOn"] == "ApiGatewayAccount"
    account = props(raw, "ApiGatewayAccount")
    assert is_get_att(account["CloudWatchRoleArn"], "ApiGatewayLogsRole")
    role = props(raw, "ApiGatewayLogsRole")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert raw["Resources"]["ApiGatewayLogsRole"]["DeletionPolicy"] == "Retain"


# ------------------------------------------------------------------ sign-up rate limits
def test_the_rate_limit_table_is_a_small_encrypted_expiring_key_value_table(stack: Stack) -> None:
    table = props(stack.template, RATE_LIMITS)
    assert table["KeySchema"] == [{"AttributeName": "key", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "key", "AttributeType": "S"}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert "PointInTimeRecoverySpecification" not in table  # hourly counters: nothing to restore
    assert "GlobalSecondaryIndexes" not in table


def test_registration_gets_the_table_and_the_limits_from_parameters(stack: Stack) -> None:
    env = environment(stack.template, "RegistrationFunction")
    assert env["RATE_LIMITS_TABLE"] == {"Ref": RATE_LIMITS}
    assert env["SIGNUPS_PER_ADDRESS_PER_HOUR"] == {"Ref": "SignupsPerAddressPerHour"}
    assert env["SIGNUPS_PER_SOURCE_IP_PER_HOUR"] == {"Ref": "SignupsPerSourceIpPerHour"}
    resolved = stack.function_env("RegistrationFunction")
    assert (resolved["SIGNUPS_PER_ADDRESS_PER_HOUR"], resolved["SIGNUPS_PER_SOURCE_IP_PER_HOUR"]) == ("3", "20")
    overridden = Stack.load(TEMPLATE, overrides={"SignupsPerAddressPerHour": "5", "SignupsPerSourceIpPerHour": "50"})
    env = overridden.function_env("RegistrationFunction")
    assert (env["SIGNUPS_PER_ADDRESS_PER_HOUR"], env["SIGNUPS_PER_SOURCE_IP_PER_HOUR"]) == ("5", "50")


def test_only_registration_may_touch_the_rate_limits_and_only_with_update_item(stack: Stack) -> None:
    raw = stack.template
    grants = [
        (function, statement)
        for function in functions(raw)
        for statement in statements(raw, function)
        if RATE_LIMITS in references(statement.get("Resource"))
    ]
    assert len(grants) == 1
    ((function, statement),) = grants
    assert function == "RegistrationFunction"
    assert as_list(statement["Action"]) == ["dynamodb:UpdateItem"]
    assert as_list(statement["Resource"]) == [{"Fn::GetAtt": [RATE_LIMITS, "Arn"]}]
    for other in set(functions(raw)) - {"RegistrationFunction"}:
        assert RATE_LIMITS not in references(environment(raw, other)), other


# ----------------------------------------------------------------- least privilege
def broad_grants(raw: Template) -> list[str]:
    """Wildcard actions, "*" resources where IAM could take a narrower one, writes on an index,
    SAM policy templates other than the allowed ones, and roles the template does not write."""
    found = []
    for function in functions(raw):
        properties = props(raw, function)
        if "Role" in properties:
            found.append(f"{function}: its own Role, not the policies here")
        for policy in properties.get("Policies") or []:
            if isinstance(policy, str):
                found.append(f"{function}: managed policy {policy}")
            elif "Statement" not in policy and not set(policy) <= SAM_POLICY_TEMPLATES:
                found.append(f"{function}: policy template {sorted(policy)}")
        for statement in statements(raw, function):
            actions = [str(a) for a in as_list(statement["Action"])]
            resources = as_list(statement["Resource"])
            sid = statement.get("Sid", "?")
            if statement["Effect"] != "Allow" or "NotAction" in statement or "NotResource" in statement:
                found.append(f"{function} {sid}: not a plain Allow")
            for action in actions:
                if action == "*" or action.endswith(":*"):
                    found.append(f"{function} {sid}: {action}")
            if "*" in resources and not set(actions) <= NO_RESOURCE_LEVEL:
                found.append(f"{function} {sid}: Resource * for {sorted(set(actions) - NO_RESOURCE_LEVEL)}")
            if any("/index/" in json.dumps(r) for r in resources) and not set(actions) <= {
                "dynamodb:Query",
                "dynamodb:Scan",
            }:
                found.append(f"{function} {sid}: {sorted(actions)} on an index")
    return found


def foreign_resources(raw: Template) -> list[str]:
    """Resources a function's policy grants on that its environment does not name: a function
    may act only on its own tables, queues, secret and configuration set."""
    found = []
    for function in functions(raw):
        named = references(environment(raw, function))
        granted = references(props(raw, function).get("Policies") or [])
        for logical_id in sorted(granted - named):
            if logical_id in raw["Resources"]:
                found.append(f"{function}: {logical_id}")
    return found


def test_every_function_is_granted_only_its_own_actions_on_its_own_resources(stack: Stack) -> None:
    raw = stack.template
    assert len(functions(raw)) >= 8
    assert broad_grants(raw) == []
    assert foreign_resources(raw) == []
    # and the two "*": SES's GetAccount and CloudWatch's GetMetricData have no resource-level permissions
    stars = [
        (function, statement["Action"])
        for function in functions(raw)
        for statement in statements(raw, function)
        if "*" in as_list(statement["Resource"])
    ]
    assert stars == [("NewsletterWorkerFunction", ["ses:GetAccount"]), ("AdminFunction", ["cloudwatch:GetMetricData"])]


def test_broad_and_foreign_grants_are_found(raw: Template) -> None:
    policies = props(raw, "RegistrationFunction")["Policies"]
    policies[0]["Statement"].extend(
        [
            {"Sid": "A", "Effect": "Allow", "Action": "dynamodb:*", "Resource": {"Fn::GetAtt": [RATE_LIMITS, "Arn"]}},
            {"Sid": "B", "Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": "*"},
            {
                "Sid": "C",
                "Effect": "Allow",
                "Action": ["dynamodb:PutItem"],
                "Resource": {"Fn::Sub": "${SubscribersTable.Arn}/index/ById"},
            },
            {
                "Sid": "D",
                "Effect": "Allow",
                "Action": ["dynamodb:Scan"],
                "Resource": {"Fn::GetAtt": ["ResultsTable", "Arn"]},
            },
        ]
    )
    policies.append({"DynamoDBCrudPolicy": {"TableName": {"Ref": "ResultsTable"}}})
    props(raw, "AdminFunction")["Role"] = "arn:aws:iam::123456789012:role/admin"
    assert broad_grants(raw) == [
        "RegistrationFunction: policy template ['DynamoDBCrudPolicy']",
        "RegistrationFunction A: dynamodb:*",
        "RegistrationFunction B: Resource * for ['sqs:SendMessage']",
        "RegistrationFunction C: ['dynamodb:PutItem'] on an index",
        "AdminFunction: its own Role, not the policies here",
    ]
    assert foreign_resources(raw) == ["RegistrationFunction: ResultsTable"]


# ----------------------------------------------------------------------------- secrets
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSPHRASE|PRIVATE|CREDENTIAL|TOKEN|API_KEY|(^|_)KEY$")


def looks_secret(value: str) -> bool:
    """A long run of letters and digits (base64/hex-like): a key or password, not a name, URL or ARN."""
    return (
        len(value) >= 20
        and re.fullmatch(r"[A-Za-z0-9+/=_\-]+", value) is not None
        and bool(re.search(r"\d", value) and re.search(r"[A-Za-z]", value))
    )


def secrets_in_the_clear(raw: Template) -> list[str]:
    """Environment variables and outputs that carry a secret's value instead of where to find it."""
    parameters = raw.get("Parameters") or {}
    secrets = set(of_type(raw, "AWS::SecretsManager::Secret"))
    found = []
    places = [
        (f"{function} {name}", value, name)
        for function in functions(raw)
        for name, value in environment(raw, function).items()
    ]
    places += [(f"output {name}", output["Value"], name) for name, output in (raw.get("Outputs") or {}).items()]
    for where, value, name in places:
        text = json.dumps(value)
        referred = references(value)
        if "{{resolve:" in text:
            found.append(f"{where}: a dynamic reference puts the value in")
        if any(parameters.get(p, {}).get("NoEcho") for p in referred):
            found.append(f"{where}: a NoEcho parameter")
        literals = [value] if isinstance(value, str) else []
        literals += [str(parameters[p].get("Default", "")) for p in referred if p in parameters]
        if any(looks_secret(literal) for literal in literals):
            found.append(f"{where}: a literal that looks like a key")
        if SECRET_NAME.search(name.upper()) and not (
            value == {"Ref": next(iter(referred), "")} and referred <= secrets
        ):
            found.append(f"{where}: a secret's name, not a Ref to a Secrets Manager secret (its ARN)")
    return found


def test_no_secret_is_in_an_environment_variable_or_an_output(stack: Stack) -> None:
    raw = stack.template
    assert secrets_in_the_clear(raw) == []
    # the link key is read from Secrets Manager by its ARN, by the functions that sign or check links
    readers = {f for f in functions(raw) if environment(raw, f).get("TOKEN_SECRET_ARN") == {"Ref": "LinkSigningSecret"}}
    assert readers == {"RegistrationFunction", "WelcomeWorkerFunction", "NewsletterWorkerFunction", "AdminFunction"}
    # the console's app client has no secret that would have to be stored somewhere
    for client in of_type(raw, "AWS::Cognito::UserPoolClient").values():
        assert client["Properties"].get("GenerateSecret", False) is False


def test_a_secret_in_the_clear_is_found(raw: Template) -> None:
    raw["Parameters"]["SigningKey"] = {"Type": "String", "NoEcho": True}
    env = props(raw, "RegistrationFunction")["Environment"]["Variables"]
    env["LINK_KEY"] = {"Ref": "SigningKey"}
    env["OTHER"] = "c2VjcmV0LWtleS0xMjM0NTY3ODkw"
    env["TOKEN_SECRET_ARN"] = "{{resolve:secretsmanager:link-key}}"
    raw["Outputs"]["Leak"] = {"Value": {"Fn::Sub": "{{resolve:secretsmanager:${LinkSigningSecret}}}"}}
    assert secrets_in_the_clear(raw) == [
        "RegistrationFunction TOKEN_SECRET_ARN: a dynamic reference puts the value in",
        "RegistrationFunction TOKEN_SECRET_ARN: a secret's name, not a Ref to a Secrets Manager secret (its ARN)",
        "RegistrationFunction LINK_KEY: a NoEcho parameter",
        "RegistrationFunction LINK_KEY: a secret's name, not a Ref to a Secrets Manager secret (its ARN)",
        "RegistrationFunction OTHER: a literal that looks like a key",
        "output Leak: a dynamic reference puts the value in",
    ]
