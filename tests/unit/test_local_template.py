"""The local stack: parameters, intrinsics, Globals, physical ids, events, provisioning."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mailroom_local.cfn import loads_template
from mailroom_local.intrinsics import IntrinsicError
from mailroom_local.template import Stack, TemplateError
from tests.support import ROOT, TEMPLATE

SMALL = """
Parameters:
  Stage:
    Type: String
    Default: dev
    AllowedValues: [dev, prod]
  Count:
    Type: Number
    Default: 5
    MinValue: 1
    MaxValue: 10
  Sender:
    Type: String
    Default: a@example.com
    AllowedPattern: "^[^@]+@[^@]+$"
  Names:
    Type: CommaDelimitedList
    Default: "x, y"
Mappings:
  Sizes:
    dev: {Memory: 256}
    prod: {Memory: 1024}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
  CountIsFive: !Equals [!Ref Count, 5]
  Both: !And [!Condition IsDev, !Condition CountIsFive]
Globals:
  Function:
    Runtime: python3.13
    Timeout: 30
    MemorySize: !FindInMap [Sizes, !Ref Stage, Memory]
    Layers: [!Ref SharedLayer]
    Environment:
      Variables:
        STAGE: !Ref Stage
        LEVEL: INFO
Resources:
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layers/shared/
  Work:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt WorkDlq.Arn
        maxReceiveCount: 4
  WorkDlq:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-dlq"
      MessageRetentionPeriod: 1209600
  ProdOnly:
    Type: AWS::SQS::Queue
    Condition: IsProd
  Items:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
        - {AttributeName: email, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}
      GlobalSecondaryIndexes:
        - IndexName: by-email
          KeySchema: [{AttributeName: email, KeyType: HASH}]
          Projection: {ProjectionType: ALL}
      LocalSecondaryIndexes:
        - IndexName: by-email-local
          KeySchema: [{AttributeName: pk, KeyType: HASH}, {AttributeName: email, KeyType: RANGE}]
          Projection: {ProjectionType: KEYS_ONLY}
      TimeToLiveSpecification: {AttributeName: expires, Enabled: true}
      PointInTimeRecoverySpecification: {PointInTimeRecoveryEnabled: true}
  Provisioned:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${AWS::StackName}-provisioned"
      AttributeDefinitions: [{AttributeName: id, AttributeType: N}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
      ProvisionedThroughput: {ReadCapacityUnits: 2, WriteCapacityUnits: "3"}
  Simple:
    Type: AWS::Serverless::SimpleTable
    Properties:
      PrimaryKey: {Name: key, Type: String}
  Identity:
    Type: AWS::SES::EmailIdentity
    Condition: IsProd
    Properties:
      EmailIdentity: !Ref Sender
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/worker/
      Handler: pkg.module.handle
      MemorySize: 128
      Layers: [arn:aws:lambda:us-east-1:123456789012:layer:other:3]
      Environment:
        Variables:
          LEVEL: DEBUG
          QUEUE_URL: !Ref Work
          QUEUE_NAME: !GetAtt Work.QueueName
          TABLE: !Ref Items
          TABLE_ARN: !GetAtt Items.Arn
          COUNT: !Ref Count
          FLAG: true
          OPTIONAL: !If [IsProd, "yes", !Ref AWS::NoValue]
          MODE: !If [Both, both, not-both]
          FIRST_NAME: !Select [0, !Ref Names]
      Events:
        Tasks:
          Type: SQS
          Properties:
            Queue: !GetAtt Work.Arn
            BatchSize: 25
            MaximumBatchingWindowInSeconds: 2
        Get:
          Type: Api
          Properties:
            Path: /items/{id}
            Method: GET
        Nightly:
          Type: Schedule
          Properties:
            Schedule: cron(0 3 * * ? *)
            Enabled: false
        Hourly:
          Type: ScheduleV2
          Properties:
            Name: hourly-report
            ScheduleExpression: rate(1 hour)
            ScheduleExpressionTimezone: Europe/Berlin
            GroupName: reports
Outputs:
  Url:
    Value: !Sub "https://${Worker}.lambda-url.${AWS::Region}.${AWS::URLSuffix}/${Stage}/ ${!NotAVariable}"
"""


def small(overrides: dict[str, str] | None = None, region: str = "eu-west-1") -> Stack:
    return Stack(loads_template(SMALL), base_dir=Path("/project"), overrides=overrides, region=region)


# ----------------------------------------------------------------------------- parameters
def test_parameters_take_their_defaults_as_strings() -> None:
    stack = small()
    assert stack.parameters == {"Stage": "dev", "Count": "5", "Sender": "a@example.com", "Names": ["x", "y"]}


def test_overrides_replace_defaults() -> None:
    stack = small({"Stage": "prod", "Count": "7"})
    assert stack.parameters["Stage"] == "prod"
    assert stack.parameters["Count"] == "7"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Stage": "test"}, "not one of"),
        ({"Count": "11"}, "MaxValue"),
        ({"Count": "0"}, "MinValue"),
        ({"Count": "many"}, "not a number"),
        ({"Sender": "nobody"}, "does not match"),
        ({"Nope": "x"}, "unknown parameter"),
    ],
)
def test_invalid_overrides_are_rejected_like_a_deploy(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        small(overrides)


def test_a_parameter_without_default_needs_an_override() -> None:
    template = {"Parameters": {"Required": {"Type": "String"}}, "Resources": {}}
    with pytest.raises(TemplateError, match="no Default"):
        Stack(template, base_dir=Path("."))
    assert Stack(template, base_dir=Path("."), overrides={"Required": "x"}).parameters == {"Required": "x"}


def test_runtime_defaults_fill_declared_parameters_no_override_sets() -> None:
    stack = small({"Count": "7"})
    assert stack.condition("IsDev")  # evaluated (and cached) before the new value
    changed = stack.with_defaults({"Stage": "prod", "Count": "9", "Undeclared": "x"})
    assert changed is not stack
    assert changed.parameters["Stage"] == "prod"  # declared, not overridden: the runtime's value
    assert changed.parameters["Count"] == "7"  # the override wins
    assert "Undeclared" not in changed.parameters
    assert changed.overrides == {"Count": "7", "Stage": "prod"}
    assert not changed.condition("IsDev")  # conditions are evaluated afresh
    assert changed.function_env("Worker")["STAGE"] == "prod"
    assert (changed.region, changed.account_id, changed.stack_name) == (stack.region, "123456789012", "mailroom-local")
    assert stack.parameters["Stage"] == "dev"  # the original is unchanged


def test_runtime_defaults_that_change_nothing_keep_the_stack() -> None:
    stack = small({"Stage": "prod"})
    assert stack.with_defaults({"Stage": "dev", "Undeclared": "x"}) is stack


def test_runtime_defaults_are_validated_like_overrides() -> None:
    with pytest.raises(TemplateError, match="not one of"):
        small().with_defaults({"Stage": "local"})


# ----------------------------------------------------------------------------- intrinsics
def test_refs_and_attributes_resolve_to_local_physical_values() -> None:
    stack = small()
    assert stack.resolve({"Ref": "Work"}) == "https://sqs.eu-west-1.amazonaws.com/123456789012/Work"
    assert stack.resolve({"Fn::GetAtt": ["Work", "Arn"]}) == "arn:aws:sqs:eu-west-1:123456789012:Work"
    assert stack.resolve({"Fn::GetAtt": ["WorkDlq", "QueueName"]}) == "mailroom-local-dlq"
    assert stack.resolve({"Ref": "Items"}) == "Items"
    assert stack.resolve({"Ref": "Provisioned"}) == "mailroom-local-provisioned"
    assert stack.resolve({"Fn::GetAtt": ["Items", "Arn"]}) == "arn:aws:dynamodb:eu-west-1:123456789012:table/Items"
    assert stack.resolve({"Ref": "Worker"}) == "Worker"
    assert stack.resolve({"Fn::GetAtt": ["Worker", "Arn"]}) == "arn:aws:lambda:eu-west-1:123456789012:function:Worker"
    assert stack.resolve({"Ref": "SharedLayer"}) == "arn:aws:lambda:eu-west-1:123456789012:layer:SharedLayer:1"
    assert stack.resolve({"Ref": "Identity"}) == "a@example.com"
    assert stack.resolve({"Ref": "AWS::AccountId"}) == "123456789012"
    assert stack.resolve({"Ref": "AWS::StackName"}) == "mailroom-local"


def test_sub_substitutes_pseudo_parameters_resources_attributes_and_variables() -> None:
    stack = small()
    assert stack.resolve({"Fn::Sub": "${AWS::Region}/${AWS::AccountId}/${AWS::StackName}"}) == (
        "eu-west-1/123456789012/mailroom-local"
    )
    assert stack.resolve({"Fn::Sub": "/aws/lambda/${Worker}"}) == "/aws/lambda/Worker"
    assert stack.resolve({"Fn::Sub": "${Work.Arn}|${Stage}"}) == "arn:aws:sqs:eu-west-1:123456789012:Work|dev"
    assert stack.resolve({"Fn::Sub": ["${A}-${Stage}", {"A": {"Ref": "Count"}}]}) == "5-dev"
    assert stack.resolve(stack.template["Outputs"]["Url"]["Value"]) == (
        "https://Worker.lambda-url.eu-west-1.amazonaws.com/dev/ ${NotAVariable}"
    )


def test_join_select_split_base64_and_azs() -> None:
    stack = small()
    assert stack.resolve({"Fn::Join": ["-", ["a", {"Ref": "Stage"}, 3]]}) == "a-dev-3"
    assert stack.resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}) == "b"
    assert stack.resolve({"Fn::Base64": "hi"}) == "aGk="
    assert stack.resolve({"Fn::GetAZs": ""}) == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    assert stack.resolve({"Fn::Length": [1, 2]}) == 2
    assert stack.resolve({"Fn::ToJsonString": {"a": [1]}}) == '{"a":[1]}'


def test_conditions_if_and_no_value() -> None:
    dev, prod = small(), small({"Stage": "prod"})
    assert dev.condition("IsDev") and not dev.condition("IsProd")
    assert dev.condition("CountIsFive")  # CloudFormation compares "5" and 5 as strings
    assert dev.condition("Both") and not prod.condition("Both")
    assert dev.resolve({"A": {"Fn::If": ["IsProd", 1, {"Ref": "AWS::NoValue"}]}, "B": 2}) == {"B": 2}
    assert dev.resolve([1, {"Ref": "AWS::NoValue"}, 3]) == [1, 3]
    assert prod.resolve({"Fn::If": ["IsProd", "p", "d"]}) == "p"


@pytest.mark.parametrize(
    "expression",
    [
        {"Ref": "Missing"},
        {"Fn::GetAtt": ["Work", "Nope"]},
        {"Fn::ImportValue": "exported"},
        {"Fn::If": ["NoSuchCondition", 1, 2]},
        {"Fn::Select": [5, ["a"]]},
        {"Fn::FindInMap": ["Sizes", "qa", "Memory"]},
    ],
)
def test_what_cannot_be_resolved_fails_clearly(expression: dict[str, Any]) -> None:
    with pytest.raises(IntrinsicError):
        small().resolve(expression)


def test_a_condition_that_refers_to_itself_is_an_error() -> None:
    template = {"Conditions": {"Loop": {"Fn::Not": [{"Condition": "Loop"}]}}, "Resources": {}}
    with pytest.raises(IntrinsicError, match="itself"):
        Stack(template, base_dir=Path(".")).condition("Loop")


# ----------------------------------------------------------------------- functions & events
def test_globals_are_merged_into_functions_like_sam() -> None:
    stack = small()
    worker = stack.functions["Worker"]
    assert worker.code_dir == Path("/project/src/worker")
    assert worker.handler == "pkg.module.handle"
    assert worker.handler_file == Path("/project/src/worker/pkg/module.py")
    assert worker.handler_function == "handle"
    assert worker.runtime == "python3.13"
    assert worker.timeout == 30  # from Globals
    assert worker.memory_size == 128  # the function wins
    assert worker.layer_dirs == (Path("/project/layers/shared"),)  # lists concatenate; ARNs have no local dir
    assert stack.function_env("Worker") == {
        "STAGE": "dev",
        "LEVEL": "DEBUG",
        "QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/Work",
        "QUEUE_NAME": "Work",
        "TABLE": "Items",
        "TABLE_ARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/Items",
        "COUNT": "5",
        "FLAG": "true",
        "MODE": "both",
        "FIRST_NAME": "x",
    }
    assert small({"Stage": "prod"}).function_env("Worker")["OPTIONAL"] == "yes"


def test_events_become_routes_sources_and_schedules() -> None:
    stack = small()
    (route,) = stack.routes
    assert (route.function, route.path, route.method, route.stage) == ("Worker", "/items/{id}", "get", "Prod")
    (source,) = stack.sqs_sources
    assert source.queue_arn == "arn:aws:sqs:eu-west-1:123456789012:Work"
    assert (source.batch_size, source.batching_window, source.report_batch_item_failures) == (25, 2.0, False)
    schedules = {s.name: s for s in stack.schedules}
    assert set(schedules) == {"Nightly", "hourly-report"}
    assert schedules["Nightly"].event_type == "Schedule" and not schedules["Nightly"].enabled
    assert schedules["Nightly"].timezone == "UTC"
    hourly = schedules["hourly-report"]
    assert (hourly.expression, hourly.timezone, hourly.group, hourly.enabled) == (
        "rate(1 hour)",
        "Europe/Berlin",
        "reports",
        True,
    )


def test_queues_come_dead_letter_queues_first_and_honour_conditions() -> None:
    dev = small()
    assert list(dev.queues) == ["WorkDlq", "Work"]
    work = dev.queues["Work"]
    assert work.attributes["VisibilityTimeout"] == "60"
    assert json.loads(work.attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": "arn:aws:sqs:eu-west-1:123456789012:mailroom-local-dlq",
        "maxReceiveCount": 4,
    }
    assert "ProdOnly" in small({"Stage": "prod"}).queues


def test_circular_queue_dependencies_are_an_error() -> None:
    template = {
        "Resources": {
            "A": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["B", "Arn"]}, "maxReceiveCount": 1}
                },
            },
            "B": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["A", "Arn"]}, "maxReceiveCount": 1}
                },
            },
        }
    }
    with pytest.raises(TemplateError, match="circular"):
        Stack(template, base_dir=Path(".")).queues  # noqa: B018


def test_the_mailroom_template() -> None:
    stack = Stack.load(TEMPLATE, region="us-east-1")
    assert list(stack.queues) == [
        "WelcomeDeadLetterQueue",
        "WelcomeQueue",
        "NewsletterDeadLetterQueue",
        "DispatcherFailureQueue",
        "FanoutDeadLetterQueue",
        "FanoutQueue",
        "NewsletterQueue",
        "NewsletterDispatcherFunctionDailyNewsletterQueue",
        "NewsletterDispatcherFunctionRecoveryQueue",
        "SesEventsDeadLetterQueue",
        "SesEventsQueue",
    ]
    assert set(stack.functions) == {
        "RegistrationFunction",
        "WelcomeWorkerFunction",
        "NewsletterDispatcherFunction",
        "FanoutFunction",
        "NewsletterWorkerFunction",
        "AdminFunction",
        "AuthFunction",
        "SesEventsFunction",
    }
    welcome = stack.functions["WelcomeWorkerFunction"]
    assert welcome.code_dir == ROOT / "functions" / "welcome_worker"
    assert welcome.handler_file.is_file()
    assert ROOT / "layers" / "mailroom" in welcome.layer_dirs
    env = stack.function_env("WelcomeWorkerFunction")
    assert env["SUBSCRIBERS_TABLE"] == "SubscribersTable" and env["RESULTS_TABLE"] == "ResultsTable"
    assert env["STAGE"] == "dev" and env["POWERTOOLS_SERVICE_NAME"] == "welcome-worker"
    assert not stack.condition("CreateIdentity")


# ------------------------------------------------------------------------------ provision
@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.mark.usefixtures("aws")
def test_provision_creates_tables_queues_and_identities_from_the_template() -> None:
    stack = small(region="us-east-1")
    created = stack.provision()
    assert set(created.tables.values()) == {"Items", "mailroom-local-provisioned", "Simple"}
    assert list(created.queues) == ["WorkDlq", "Work"]
    assert created.identities == ["a@example.com"]  # created although its Condition is false

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    items = dynamodb.describe_table(TableName="Items")["Table"]
    assert [k["AttributeName"] for k in items["KeySchema"]] == ["pk", "sk"]
    assert items["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert items["GlobalSecondaryIndexes"][0]["IndexName"] == "by-email"
    assert items["LocalSecondaryIndexes"][0]["IndexName"] == "by-email-local"
    ttl = dynamodb.describe_time_to_live(TableName="Items")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires"}
    backups = dynamodb.describe_continuous_backups(TableName="Items")["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    provisioned = dynamodb.describe_table(TableName="mailroom-local-provisioned")["Table"]
    assert provisioned["ProvisionedThroughput"]["WriteCapacityUnits"] == 3
    simple = dynamodb.describe_table(TableName="Simple")["Table"]
    assert simple["KeySchema"] == [{"AttributeName": "key", "KeyType": "HASH"}]

    sqs = boto3.client("sqs", region_name="us-east-1")
    work = sqs.get_queue_attributes(QueueUrl=created.queues["Work"].url, AttributeNames=["All"])["Attributes"]
    assert work["VisibilityTimeout"] == "60"
    assert json.loads(work["RedrivePolicy"])["deadLetterTargetArn"] == created.queues["WorkDlq"].arn
    assert stack.function_env("Worker")["QUEUE_URL"] == created.queues["Work"].url

    identities = boto3.client("sesv2", region_name="us-east-1").list_email_identities()["EmailIdentities"]
    assert [i["IdentityName"] for i in identities] == ["a@example.com"]

    again = stack.provision()  # idempotent
    assert again.queues["Work"].url == created.queues["Work"].url


@pytest.mark.usefixtures("aws")
def test_provision_leaves_out_what_the_runtime_plays_or_aws_alone_has() -> None:
    """An EventBridge rule (the SES event bus plays it), its queue policy and an X-Ray sampling
    rule (no traces locally) are not created; the rule's ARN resolves for the policies."""
    stack = Stack.load(TEMPLATE, region="us-east-1")
    kinds = {stack.template["Resources"][name]["Type"] for name in ("SesFeedbackRule", "FunctionsSamplingRule")}
    assert kinds == {"AWS::Events::Rule", "AWS::XRay::SamplingRule"}
    created = stack.provision()
    assert "SesEventsQueue" in created.queues
    assert boto3.client("events", region_name="us-east-1").list_rules()["Rules"] == []
    assert stack.get_att("SesFeedbackRule", "Arn") == "arn:aws:events:us-east-1:123456789012:rule/SesFeedbackRule"


@pytest.mark.usefixtures("aws")
def test_provisioned_resources_accept_what_the_handlers_do() -> None:
    """The sender identity of the Mailroom template is usable, though CreateIdentity is false."""
    stack = Stack.load(TEMPLATE, region="us-east-1")
    created = stack.provision()
    assert created.identities == ["newsletter@example.com"]
    sesv2 = boto3.client("sesv2", region_name="us-east-1")
    sesv2.send_email(
        FromEmailAddress="newsletter@example.com",
        Destination={"ToAddresses": ["reader@example.org"]},
        Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
    )
    url = stack.function_env("RegistrationFunction")["WELCOME_QUEUE_URL"]
    boto3.client("sqs", region_name="us-east-1").send_message(QueueUrl=url, MessageBody="{}")
    # the configuration set the senders name exists
    configuration_set = stack.function_env("NewsletterWorkerFunction")["CONFIGURATION_SET"]
    assert created.configuration_sets == [configuration_set]
    sesv2.get_configuration_set(ConfigurationSetName=configuration_set)
    # the link-signing secret is generated as GenerateSecretString asks, readable by the name
    # the functions get, and kept when provisioning again (links already mailed stay valid)
    secret_id = stack.function_env("RegistrationFunction")["TOKEN_SECRET_ARN"]
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    value = secrets.get_secret_value(SecretId=secret_id)["SecretString"]
    assert len(value) == 64 and value.isalnum()
    stack.provision()
    assert secrets.get_secret_value(SecretId=secret_id)["SecretString"] == value
    assert stack.provision().secrets == {"LinkSigningSecret": secret_id}
    # the parameter the mailers read when PublicUrl is empty exists, by the name they get
    name = stack.function_env("NewsletterWorkerFunction")["PUBLIC_URL_PARAMETER"]
    assert created.parameters == {"PublicUrlParameter": name}
    value = boto3.client("ssm", region_name="us-east-1").get_parameter(Name=name)["Parameter"]["Value"]
    assert value == "https://webdistribution.cloudfront.net"


# ------------------------------------------------------------------- parameters, web hosting
WEB = """
Parameters:
  PublicUrl: {Type: String, Default: ""}
Conditions:
  HasPublicUrl: !Not [!Equals [!Ref PublicUrl, ""]]
Resources:
  Site:
    Type: AWS::CloudFront::Distribution
    Properties: {DistributionConfig: {Enabled: true}}
  Files:
    Type: AWS::S3::Bucket
  Headers:
    Type: AWS::CloudFront::ResponseHeadersPolicy
    Properties:
      ResponseHeadersPolicyConfig:
        Name: h
        SecurityHeadersConfig:
          StrictTransportSecurity: {AccessControlMaxAgeSec: "600", IncludeSubdomains: true, Override: true}
          ContentSecurityPolicy: {ContentSecurityPolicy: "default-src 'self'", Override: true}
          ContentTypeOptions: {Override: true}
          XSSProtection: {Protection: true, ModeBlock: true, Override: true}
        CustomHeadersConfig:
          Items: [{Header: X-Stack, Value: !Ref AWS::StackName, Override: true}]
  Url:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub "/${AWS::StackName}/public-url"
      Type: String
      Description: Links in mails start with it.
      Value: !If [HasPublicUrl, !Ref PublicUrl, !Sub "https://${Site.DomainName}"]
  Unnamed:
    Type: AWS::SSM::Parameter
    Properties:
      Type: StringList
      Value: !Split [",", "a,b"]
"""


def web(overrides: dict[str, str] | None = None) -> Stack:
    return Stack(loads_template(WEB), base_dir=Path("/project"), overrides=overrides, region="us-east-1")


def test_an_if_evaluates_only_the_branch_it_picks() -> None:
    """A runtime that sets PublicUrl never asks for the distribution's domain (nothing serves it locally)."""
    template = loads_template(WEB)
    template["Resources"]["Url"]["Properties"]["Value"]["Fn::If"][2] = {"Fn::GetAtt": ["Site", "NoSuchAttribute"]}
    given = Stack(template, base_dir=Path("/project"), overrides={"PublicUrl": "http://127.0.0.1:3000"})
    assert given.resolve(given.resources["Url"]["Properties"])["Value"] == "http://127.0.0.1:3000"
    empty = Stack(template, base_dir=Path("/project"))
    with pytest.raises(IntrinsicError, match="NoSuchAttribute"):
        empty.resolve(empty.resources["Url"]["Properties"])


def test_web_hosting_resources_resolve_to_aws_shaped_placeholders() -> None:
    stack = web()
    assert stack.resolve({"Fn::GetAtt": ["Site", "DomainName"]}) == "site.cloudfront.net"
    assert stack.resolve({"Ref": "Site"}) == stack.resolve({"Fn::GetAtt": ["Site", "Id"]}) == "Site"
    assert stack.resolve({"Ref": "Files"}) == "files"  # bucket names are lower case
    assert stack.resolve({"Fn::GetAtt": ["Files", "Arn"]}) == "arn:aws:s3:::files"
    assert stack.resolve({"Fn::GetAtt": ["Files", "RegionalDomainName"]}) == "files.s3.us-east-1.amazonaws.com"
    assert stack.resolve({"Ref": "Url"}) == "/mailroom-local/public-url"
    assert stack.resolve({"Fn::GetAtt": ["Url", "Value"]}) == "https://site.cloudfront.net"


def test_response_headers_are_rendered_as_cloudfront_sends_them() -> None:
    assert web().response_headers() == {
        "Strict-Transport-Security": "max-age=600; includeSubDomains",
        "Content-Security-Policy": "default-src 'self'",
        "X-Content-Type-Options": "nosniff",
        "X-XSS-Protection": "1; mode=block",
        "X-Stack": "mailroom-local",
    }
    assert small().response_headers() == {}  # no policy, no headers
    with pytest.raises(TemplateError, match="not an AWS::CloudFront::ResponseHeadersPolicy"):
        web().response_headers("Site")


@pytest.mark.usefixtures("aws")
def test_provision_puts_ssm_parameters_and_keeps_them_current() -> None:
    created = web({"PublicUrl": "http://127.0.0.1:3000"}).provision()
    assert created.parameters == {"Url": "/mailroom-local/public-url", "Unnamed": "Unnamed"}
    ssm = boto3.client("ssm", region_name="us-east-1")
    parameter = ssm.get_parameter(Name="/mailroom-local/public-url")["Parameter"]
    assert (parameter["Type"], parameter["Value"]) == ("String", "http://127.0.0.1:3000")
    assert ssm.get_parameter(Name="Unnamed")["Parameter"]["Value"] == "a,b"
    # provisioning again (a restarted runtime on another port) follows the template's value
    web({"PublicUrl": "http://127.0.0.1:4000"}).provision()
    assert ssm.get_parameter(Name="/mailroom-local/public-url")["Parameter"]["Value"] == "http://127.0.0.1:4000"
    web().provision()  # PublicUrl empty: the distribution's (placeholder) domain
    assert ssm.get_parameter(Name="/mailroom-local/public-url")["Parameter"]["Value"] == "https://site.cloudfront.net"
    described = ssm.describe_parameters()["Parameters"]
    assert {p["Name"]: p.get("Description") for p in described}["/mailroom-local/public-url"] == (
        "Links in mails start with it."
    )
