"""Create a stack's tables, queues, SES identities, secrets and parameters, as CloudFormation would.

Works against any boto3 endpoint: the runtime's moto server, or moto's in-process
``mock_aws`` in unit tests. Creation is idempotent (an existing table/identity/secret is
kept; ``CreateQueue`` with equal attributes returns the existing queue; a parameter is
overwritten with its current value), so provisioning twice is harmless. The runtime passes
its own ``client`` factory (its moto server, fake credentials), so every service the
template needs is reached there.

* ``AWS::DynamoDB::Table`` -> ``CreateTable`` (KeySchema, AttributeDefinitions,
  BillingMode, ProvisionedThroughput, GSIs, LSIs, streams, SSE, table class), then
  ``UpdateTimeToLive`` and ``UpdateContinuousBackups`` (PITR) where the template asks.
  ``AWS::Serverless::SimpleTable`` -> a table with its ``PrimaryKey`` as hash key.
* ``AWS::SQS::Queue`` -> ``CreateQueue`` with the CloudFormation properties as attributes
  (``RedrivePolicy`` as JSON); dead-letter queues are created first.
* ``AWS::SES::EmailIdentity`` -> SES v2 ``CreateEmailIdentity``. Locally every identity is
  created -- even when its ``Condition`` is false -- because the handlers can only send
  from a verified identity, and in AWS the identity then exists out of band (verified by
  hand, which is exactly why the condition is false). moto treats created identities as
  verified.
* ``AWS::SES::ConfigurationSet`` -> SES v2 ``CreateConfigurationSet`` (its events are
  emulated by the runtime, see :mod:`.ses_events`).
* ``AWS::SecretsManager::Secret`` -> ``CreateSecret``: its ``SecretString``, or for
  ``GenerateSecretString`` a fresh random value of ``PasswordLength`` letters and digits
  (``secrets.token_urlsafe`` alphabet without punctuation), generated here on this machine
  as Secrets Manager would in AWS. Ref resolves to the secret's name, which
  ``GetSecretValue`` accepts as well as the ARN.
* ``AWS::Cognito::UserPool`` -> ``CreateUserPool`` (password policy, username attributes,
  admin-only sign-up, ...), ``UserPoolClient`` -> ``CreateUserPoolClient``,
  ``UserPoolGroup`` -> ``CreateGroup``. moto's ids are random: they are recorded on the stack
  (``Ref``/``GetAtt`` then give them), and a pool or client of the same name is reused.
* ``AWS::SSM::Parameter`` -> ``PutParameter`` (``Overwrite``: a parameter follows its
  template value, e.g. ``PublicUrl`` = the runtime's URL on whatever port it got) with its
  ``Name`` (else the logical id), ``Type``, ``Value``, ``Description``, ``AllowedPattern``,
  ``DataType`` and ``Tier``.

Not created locally: the web app's hosting (``AWS::S3::Bucket``, ``AWS::S3::BucketPolicy``,
``AWS::CloudFront::Distribution``, ``OriginAccessControl``, ``Function``,
``ResponseHeadersPolicy``). The local server serves ``web/`` itself and the API under
``/api``; their ``Ref``/``Fn::GetAtt`` values are AWS-shaped placeholders (see
:meth:`Stack.get_att <mailroom_local.template.Stack.get_att>`), and the response headers
policy is read with :meth:`Stack.response_headers <mailroom_local.template.Stack.response_headers>`.
Other resource types (IAM, alarms, topics, log groups, ...) are not created either.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from .template import (
    CONFIGURATION_SET_TYPE,
    IDENTITY_TYPE,
    PARAMETER_TYPE,
    SECRET_TYPE,
    TABLE_TYPES,
    USER_POOL_CLIENT_TYPE,
    USER_POOL_GROUP_TYPE,
    USER_POOL_TYPE,
)

if TYPE_CHECKING:
    from .template import Stack

__all__ = ["Provisioned", "QueueInfo", "provision"]


@dataclass(frozen=True)
class QueueInfo:
    """A created queue."""

    logical_id: str
    name: str
    url: str
    arn: str


@dataclass
class Provisioned:
    """What :func:`provision` created, by logical id."""

    tables: dict[str, str] = field(default_factory=dict)
    queues: dict[str, QueueInfo] = field(default_factory=dict)
    identities: list[str] = field(default_factory=list)
    configuration_sets: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)  # logical id -> parameter name
    user_pools: dict[str, str] = field(default_factory=dict)  # logical id -> pool id
    user_pool_clients: dict[str, str] = field(default_factory=dict)  # logical id -> client id


def provision(
    stack: Stack,
    *,
    session: boto3.session.Session | None = None,
    endpoint_url: str | None = None,
    client_for: Callable[[str], Any] | None = None,
) -> Provisioned:
    """Create every table, queue, identity, secret and parameter of ``stack``; see the module
    docstring. ``client_for(service)`` makes the boto3 clients, else the session (boto3's
    default) with ``endpoint_url``."""
    made: dict[str, Any] = {}
    session = session or boto3.session.Session()

    def client(service: str) -> Any:
        if service not in made:
            made[service] = (
                client_for(service)
                if client_for is not None
                else session.client(service, region_name=stack.region, endpoint_url=endpoint_url)  # type: ignore[call-overload]
            )
        return made[service]

    result = Provisioned()
    for logical_id in stack.of_type(*TABLE_TYPES):
        result.tables[logical_id] = _create_table(stack, logical_id, client("dynamodb"))
    for spec in stack.queues.values():
        url = client("sqs").create_queue(QueueName=spec.name, Attributes=spec.attributes)["QueueUrl"]
        stack.record_queue_url(spec.logical_id, url)
        result.queues[spec.logical_id] = QueueInfo(
            logical_id=spec.logical_id, name=spec.name, url=url, arn=str(stack.get_att(spec.logical_id, "Arn"))
        )
    for logical_id in stack.of_type(IDENTITY_TYPE, honour_conditions=False):
        identity = str(stack.ref(logical_id))
        _unless_exists(client("sesv2").create_email_identity, "AlreadyExistsException", EmailIdentity=identity)
        result.identities.append(identity)
    for logical_id in stack.of_type(CONFIGURATION_SET_TYPE):
        name = str(stack.ref(logical_id))
        # SES v2 says AlreadyExistsException; moto answers with SES v1's code
        _unless_exists(
            client("sesv2").create_configuration_set,
            "AlreadyExistsException",
            "ConfigurationSetAlreadyExistsException",
            ConfigurationSetName=name,
        )
        result.configuration_sets.append(name)
    for logical_id in stack.of_type(SECRET_TYPE):
        name = str(stack.ref(logical_id))
        _unless_exists(
            client("secretsmanager").create_secret,
            "ResourceExistsException",
            Name=name,
            SecretString=secret_string(stack, logical_id),
        )
        result.secrets[logical_id] = name
    for logical_id in stack.of_type(PARAMETER_TYPE):
        request = parameter_request(stack, logical_id)
        client("ssm").put_parameter(**request, Overwrite=True)
        result.parameters[logical_id] = str(request["Name"])
    for logical_id in stack.of_type(USER_POOL_TYPE):
        pool_id = _create_user_pool(stack, logical_id, client("cognito-idp"))
        stack.record_physical_id(logical_id, pool_id)
        result.user_pools[logical_id] = pool_id
    for logical_id in stack.of_type(USER_POOL_CLIENT_TYPE):
        client_id = _create_user_pool_client(stack, logical_id, client("cognito-idp"))
        stack.record_physical_id(logical_id, client_id)
        result.user_pool_clients[logical_id] = client_id
    for logical_id in stack.of_type(USER_POOL_GROUP_TYPE):
        properties = stack.resolve(stack.resources[logical_id].get("Properties") or {})
        group = str(properties.get("GroupName") or logical_id)
        _unless_exists(
            client("cognito-idp").create_group,
            "GroupExistsException",
            UserPoolId=str(properties["UserPoolId"]),
            GroupName=group,
            **({"Description": str(properties["Description"])} if properties.get("Description") else {}),
        )
    return result


# The user pool properties moto's CreateUserPool takes as they are (the rest -- tiers,
# deletion protection, add-ons -- change nothing locally).
_USER_POOL_PROPERTIES = (
    "Policies",
    "AutoVerifiedAttributes",
    "UsernameAttributes",
    "AliasAttributes",
    "MfaConfiguration",
    "AdminCreateUserConfig",
    "AccountRecoverySetting",
    "Schema",
    "UsernameConfiguration",
)
_USER_POOL_CLIENT_PROPERTIES = (
    "ExplicitAuthFlows",
    "GenerateSecret",
    "PreventUserExistenceErrors",
    "EnableTokenRevocation",
    "IdTokenValidity",
    "AccessTokenValidity",
    "RefreshTokenValidity",
    "TokenValidityUnits",
    "ReadAttributes",
    "WriteAttributes",
)


def _create_user_pool(stack: Stack, logical_id: str, cognito: Any) -> str:
    """``AWS::Cognito::UserPool`` -> ``CreateUserPool``; an existing pool of the same name is
    kept (moto's pool ids are random: the name is how a second provisioning finds it)."""
    properties: dict[str, Any] = stack.resolve(stack.resources[logical_id].get("Properties") or {})
    name = str(properties.get("UserPoolName") or logical_id)
    for pool in cognito.list_user_pools(MaxResults=60).get("UserPools", []):
        if pool["Name"] == name:
            return str(pool["Id"])
    request = {key: properties[key] for key in _USER_POOL_PROPERTIES if key in properties}
    return str(cognito.create_user_pool(PoolName=name, **request)["UserPool"]["Id"])


def _create_user_pool_client(stack: Stack, logical_id: str, cognito: Any) -> str:
    """``AWS::Cognito::UserPoolClient`` -> ``CreateUserPoolClient`` (the existing one of
    the same name in that pool is kept)."""
    properties: dict[str, Any] = stack.resolve(stack.resources[logical_id].get("Properties") or {})
    pool_id = str(properties["UserPoolId"])
    name = str(properties.get("ClientName") or logical_id)
    for existing in cognito.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60).get("UserPoolClients", []):
        if existing["ClientName"] == name:
            return str(existing["ClientId"])
    request = {key: properties[key] for key in _USER_POOL_CLIENT_PROPERTIES if key in properties}
    if "GenerateSecret" in request:
        request["GenerateSecret"] = _bool(request["GenerateSecret"])
    if "EnableTokenRevocation" in request:
        request["EnableTokenRevocation"] = _bool(request["EnableTokenRevocation"])
    for key in ("IdTokenValidity", "AccessTokenValidity", "RefreshTokenValidity"):
        if key in request:
            request[key] = int(request[key])
    return str(
        cognito.create_user_pool_client(UserPoolId=pool_id, ClientName=name, **request)["UserPoolClient"]["ClientId"]
    )


def _unless_exists(create: Any, *exists: str, **arguments: Any) -> None:
    """``create(**arguments)``; an error with one of the ``exists`` codes means it is there already."""
    try:
        create(**arguments)
    except ClientError as error:
        if error.response["Error"]["Code"] not in exists:
            raise


def parameter_request(stack: Stack, logical_id: str) -> dict[str, Any]:
    """The ``PutParameter`` arguments of an ``AWS::SSM::Parameter`` (without ``Overwrite``)."""
    properties: dict[str, Any] = stack.resolve(stack.resources[logical_id].get("Properties") or {})
    kind = str(properties.get("Type", "String"))
    value = properties["Value"]
    if kind == "StringList" and isinstance(value, list):
        value = ",".join(map(str, value))
    request: dict[str, Any] = {"Name": stack.physical_name(logical_id), "Type": kind, "Value": str(value)}
    for key in ("Description", "AllowedPattern", "DataType", "Tier"):
        if properties.get(key):
            request[key] = str(properties[key])
    return request


def secret_string(stack: Stack, logical_id: str) -> str:
    """A secret's value: its ``SecretString``, or one generated as ``GenerateSecretString`` asks."""
    properties: dict[str, Any] = stack.resolve(stack.resources[logical_id].get("Properties") or {})
    if "SecretString" in properties:
        return str(properties["SecretString"])
    generate = properties.get("GenerateSecretString") or {}
    length = int(generate.get("PasswordLength", 32))
    alphabet = string.ascii_letters + string.digits
    if not _bool(generate.get("ExcludePunctuation", False)):
        alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
    excluded = str(generate.get("ExcludeCharacters", ""))
    alphabet = "".join(c for c in alphabet if c not in excluded)
    return "".join(secrets.choice(alphabet) for _ in range(length))


def table_request(stack: Stack, logical_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``CreateTable`` arguments and the follow-up settings (TTL, PITR) of a table."""
    resource = stack.resources[logical_id]
    properties: dict[str, Any] = stack.resolve(resource.get("Properties") or {})
    name = stack.physical_name(logical_id)
    if resource.get("Type") == "AWS::Serverless::SimpleTable":
        key = properties.get("PrimaryKey") or {"Name": "id", "Type": "String"}
        key_type = {"String": "S", "Number": "N", "Binary": "B"}[str(key.get("Type", "String"))]
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": key_type}],
        }
        throughput = properties.get("ProvisionedThroughput")
        request.update(
            {"BillingMode": "PROVISIONED", "ProvisionedThroughput": _throughput(throughput)}
            if throughput
            else {"BillingMode": "PAY_PER_REQUEST"}
        )
        return request, {}

    billing = str(properties.get("BillingMode", "PROVISIONED"))  # CloudFormation's default
    request = {
        "TableName": name,
        "KeySchema": properties["KeySchema"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "BillingMode": billing,
    }
    if billing == "PROVISIONED":
        request["ProvisionedThroughput"] = _throughput(properties.get("ProvisionedThroughput"))
    if properties.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [
            {
                **{k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")},
                **(
                    {"ProvisionedThroughput": _throughput(index.get("ProvisionedThroughput"))}
                    if billing == "PROVISIONED"
                    else {}
                ),
            }
            for index in properties["GlobalSecondaryIndexes"]
        ]
    if properties.get("LocalSecondaryIndexes"):
        request["LocalSecondaryIndexes"] = [
            {k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")}
            for index in properties["LocalSecondaryIndexes"]
        ]
    stream = properties.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    sse = properties.get("SSESpecification")
    if sse:
        request["SSESpecification"] = {
            "Enabled": _bool(sse.get("SSEEnabled", False)),
            **({"SSEType": sse["SSEType"]} if "SSEType" in sse else {}),
            **({"KMSMasterKeyId": sse["KMSMasterKeyId"]} if "KMSMasterKeyId" in sse else {}),
        }
    if "TableClass" in properties:
        request["TableClass"] = properties["TableClass"]
    if properties.get("Tags"):
        request["Tags"] = properties["Tags"]

    extra: dict[str, Any] = {}
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and _bool(ttl.get("Enabled", False)):
        extra["TimeToLiveSpecification"] = {"AttributeName": ttl["AttributeName"], "Enabled": True}
    pitr = properties.get("PointInTimeRecoverySpecification")
    if pitr and _bool(pitr.get("PointInTimeRecoveryEnabled", False)):
        extra["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    return request, extra


def _create_table(stack: Stack, logical_id: str, dynamodb: Any) -> str:
    request, extra = table_request(stack, logical_id)
    name = str(request["TableName"])
    try:
        dynamodb.create_table(**request)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceInUseException":
            raise
        return name
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    if "TimeToLiveSpecification" in extra:
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=extra["TimeToLiveSpecification"])
    if "PointInTimeRecoverySpecification" in extra:
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification=extra["PointInTimeRecoverySpecification"]
        )
    return name


def _throughput(value: Any) -> dict[str, int]:
    value = value or {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    return {
        "ReadCapacityUnits": int(value["ReadCapacityUnits"]),
        "WriteCapacityUnits": int(value["WriteCapacityUnits"]),
    }


def _bool(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")
