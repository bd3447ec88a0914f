"""The SAM template as a local stack: parameters, conditions, physical ids, functions, events.

:class:`Stack` is what CloudFormation + the SAM transform make of ``template.yaml``, minus
the cloud: parameters get their ``Default`` (or an override, validated against
``AllowedValues``/``AllowedPattern``/``MinValue``/``MaxValue`` like a deploy would),
``Conditions`` are evaluated, ``Globals.Function`` is merged into each
``AWS::Serverless::Function`` with SAM's rules (maps merge, lists concatenate, scalars: the
function wins), and every ``Ref``/``Fn::GetAtt`` resolves to a *local* physical value.

Physical names are the logical ids (table ``SubscribersTable``, queue ``WelcomeQueue``,
function ``RegistrationFunction``) unless the template names the resource itself
(``TableName``, ``QueueName``, ``FunctionName``). The stack name is ``mailroom-local``.

The resources are created by :meth:`Stack.provision` (see :mod:`mailroom_local.provision`),
which also records the queue URLs the endpoint hands out, so that ``Ref: SomeQueue`` in a
function's environment is the URL that endpoint understands.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cfn import load_template
from .intrinsics import NO_VALUE, IntrinsicError, Resolver
from .parameters import TemplateError, as_string, parameter_values

if TYPE_CHECKING:
    import boto3

    from .provision import Provisioned

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_STACK_NAME",
    "AuthorizerSpec",
    "EventRuleSpec",
    "FunctionSpec",
    "QueueSpec",
    "RouteSpec",
    "ScheduleSpec",
    "SqsSourceSpec",
    "Stack",
    "TemplateError",
]

DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_STACK_NAME = "mailroom-local"

FUNCTION_TYPES = ("AWS::Serverless::Function",)
QUEUE_TYPE = "AWS::SQS::Queue"
TABLE_TYPES = ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable")
IDENTITY_TYPE = "AWS::SES::EmailIdentity"
CONFIGURATION_SET_TYPE = "AWS::SES::ConfigurationSet"
SECRET_TYPE = "AWS::SecretsManager::Secret"  # noqa: S105 - a resource type, not a password
PARAMETER_TYPE = "AWS::SSM::Parameter"
BUCKET_TYPE = "AWS::S3::Bucket"
DISTRIBUTION_TYPE = "AWS::CloudFront::Distribution"
RESPONSE_HEADERS_POLICY_TYPE = "AWS::CloudFront::ResponseHeadersPolicy"
USER_POOL_TYPE = "AWS::Cognito::UserPool"
USER_POOL_CLIENT_TYPE = "AWS::Cognito::UserPoolClient"
USER_POOL_GROUP_TYPE = "AWS::Cognito::UserPoolGroup"
SCHEDULE_EVENT_TYPES = ("ScheduleV2", "Schedule")
EVENT_RULE_TYPES = ("EventBridgeRule", "CloudWatchEvent")  # SAM's two names of an EventBridge rule
EVENTS_RULE_TYPE = "AWS::Events::Rule"


@dataclass(frozen=True)
class EventSpec:
    """One entry of a function's ``Events`` with resolved properties."""

    name: str
    type: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class FunctionSpec:
    """A function as Lambda would run it (Globals merged, values resolved)."""

    logical_id: str
    name: str
    code_dir: Path
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    environment: dict[str, str]
    events: dict[str, EventSpec] = field(default_factory=dict)
    layer_dirs: tuple[Path, ...] = ()
    reserved_concurrency: int | None = None  # ReservedConcurrentExecutions, if set

    @property
    def handler_file(self) -> Path:
        """``app.lambda_handler`` -> ``<code_dir>/app.py`` (dots in the module are folders)."""
        module, _, _ = self.handler.rpartition(".")
        return self.code_dir / (module.replace(".", "/") + ".py")

    @property
    def handler_function(self) -> str:
        return self.handler.rpartition(".")[2]


@dataclass(frozen=True)
class QueueSpec:
    """An ``AWS::SQS::Queue`` with its ``CreateQueue`` attributes."""

    logical_id: str
    name: str
    attributes: dict[str, str]
    depends_on: frozenset[str]


@dataclass(frozen=True)
class RouteSpec:
    """An ``Api`` event: an API Gateway REST route to a function."""

    function: str
    event: str
    path: str
    method: str
    stage: str
    api: str | None = None  # the AWS::Serverless::Api's logical id (None: SAM's implicit API)
    authorizer: str | None = None  # the name of the API's authorizer guarding it, None = open


@dataclass(frozen=True)
class AuthorizerSpec:
    """A ``COGNITO_USER_POOLS`` authorizer of an ``AWS::Serverless::Api`` (its ``Auth``)."""

    name: str
    user_pool_arns: tuple[str, ...]
    header: str  # the identity source: the header that carries the token
    validation_expression: str | None = None


@dataclass(frozen=True)
class SqsSourceSpec:
    """An ``SQS`` event: an event source mapping from a queue to a function."""

    function: str
    event: str
    queue_arn: str
    batch_size: int
    batching_window: float
    report_batch_item_failures: bool
    enabled: bool
    maximum_concurrency: int | None = None  # ScalingConfig.MaximumConcurrency (2..1000), if set


@dataclass(frozen=True)
class ScheduleSpec:
    """A ``ScheduleV2`` (EventBridge Scheduler) or ``Schedule`` (EventBridge rule) event."""

    name: str
    function: str
    event_type: str
    expression: str
    timezone: str
    input: str | None
    enabled: bool
    group: str
    description: str = ""


@dataclass(frozen=True)
class EventRuleSpec:
    """A rule on an event bus whose pattern selects the events its target gets: a function's
    ``EventBridgeRule`` event (``function``), or an ``AWS::Events::Rule`` whose target is one
    of the stack's queues (``queue``, the queue's logical id)."""

    name: str
    function: str | None
    pattern: dict[str, Any]
    bus: str = "default"
    enabled: bool = True
    queue: str | None = None

    @property
    def target(self) -> str:
        return str(self.queue or self.function)


class Stack:
    """A parsed SAM template with its values resolved for the local runtime."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        base_dir: Path,
        overrides: Mapping[str, str] | None = None,
        region: str = "us-east-1",
        account_id: str = DEFAULT_ACCOUNT_ID,
        stack_name: str = DEFAULT_STACK_NAME,
    ) -> None:
        self.template = dict(template)
        self.base_dir = base_dir
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        self.resources: dict[str, dict[str, Any]] = dict(self.template.get("Resources") or {})
        self.overrides: dict[str, str] = dict(overrides or {})
        self.parameters = parameter_values(self.template.get("Parameters") or {}, self.overrides)
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()
        self._queue_urls: dict[str, str] = {}
        self._physical_ids: dict[str, str] = {}
        self._resolver = Resolver(self)

    @classmethod
    def load(
        cls,
        path: Path,
        overrides: Mapping[str, str] | None = None,
        *,
        region: str | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
        stack_name: str = DEFAULT_STACK_NAME,
    ) -> Stack:
        """Read ``path``; ``region`` defaults to AWS_REGION/AWS_DEFAULT_REGION, then us-east-1."""
        from .aws import default_region

        return cls(
            load_template(path),
            base_dir=path.resolve().parent,
            overrides=overrides,
            region=region or default_region(),
            account_id=account_id,
            stack_name=stack_name,
        )

    def with_defaults(self, defaults: Mapping[str, str]) -> Stack:
        """This stack, or a new one in which the declared parameters no override sets take ``defaults``.

        The runtime uses it for values known only once it runs (``PublicUrl``: its own URL).
        They are validated like overrides; nothing evaluated or provisioned carries over to
        the new stack (conditions are evaluated afresh, queue URLs are recorded again).
        """
        extra = {
            name: value for name, value in defaults.items() if name in self.parameters and name not in self.overrides
        }
        if not extra:
            return self
        return Stack(
            self.template,
            base_dir=self.base_dir,
            overrides={**self.overrides, **extra},
            region=self.region,
            account_id=self.account_id,
            stack_name=self.stack_name,
        )

    # ------------------------------------------------------- resolver context
    def ref(self, name: str) -> Any:
        """``Ref``: parameters, pseudo parameters, then resources (their local physical id)."""
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/"
            f"{self.stack_name}/00000000-0000-0000-0000-000000000000",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        resource = self._resource(name)
        kind = resource.get("Type", "")
        if kind == QUEUE_TYPE:
            return self.queue_url(name)
        if kind in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            return f"arn:aws:lambda:{self.region}:{self.account_id}:layer:{name}:1"
        named_by = {IDENTITY_TYPE: "EmailIdentity", USER_POOL_GROUP_TYPE: "GroupName"}.get(kind)
        if named_by:
            return str(self.resolve(self._properties(name).get(named_by, name)))
        return self._physical_ids.get(name) or self.physical_name(name)

    def get_att(self, resource: str, attribute: str) -> Any:
        """``Fn::GetAtt`` for the attributes local code can meaningfully use."""
        kind = self._resource(resource).get("Type", "")
        name = self.physical_name(resource)
        arn_prefix = f"arn:aws:{{}}:{self.region}:{self.account_id}"
        values: dict[str, Any] = {}
        if kind == QUEUE_TYPE:
            values = {
                "Arn": f"{arn_prefix.format('sqs')}:{name}",
                "QueueName": name,
                "QueueUrl": self.queue_url(resource),
            }
        elif kind in TABLE_TYPES:
            values = {"Arn": f"{arn_prefix.format('dynamodb')}:table/{name}"}
            values["StreamArn"] = f"{values['Arn']}/stream/1970-01-01T00:00:00.000"
        elif kind in (*FUNCTION_TYPES, "AWS::Lambda::Function"):
            values = {"Arn": f"{arn_prefix.format('lambda')}:function:{name}"}
        elif kind == "AWS::Logs::LogGroup":
            values = {"Arn": f"{arn_prefix.format('logs')}:log-group:{name}:*"}
        elif kind == "AWS::Serverless::Api":
            values = {"RootResourceId": "root"}
        elif kind == PARAMETER_TYPE:
            properties = self._properties(resource)
            values = {
                "Type": self.resolve(properties.get("Type", "String")),
                "Value": self.resolve(properties["Value"]),
            }
        elif kind == BUCKET_TYPE:
            # AWS-shaped; nothing serves them locally (the web app is served by the local server)
            values = {
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com",
                "WebsiteURL": f"http://{name}.s3-website-{self.region}.amazonaws.com",
            }
        elif kind == DISTRIBUTION_TYPE:
            # AWS-shaped (no distribution runs locally); the local web app's URL is PublicUrl
            values = {"Id": name, "DomainName": f"{name.lower()}.cloudfront.net"}
        elif kind == "AWS::CloudFront::Function":
            values = {"FunctionARN": f"arn:aws:cloudfront::{self.account_id}:function/{name}", "Stage": "LIVE"}
        elif kind in ("AWS::CloudFront::OriginAccessControl", RESPONSE_HEADERS_POLICY_TYPE):
            values = {"Id": name}
        else:
            values = self._identity_attributes(resource, kind, name)
        if attribute not in values:
            raise IntrinsicError(f"Fn::GetAtt {resource}.{attribute} ({kind}) is not supported locally")
        return values[attribute]

    def _identity_attributes(self, resource: str, kind: str, name: str) -> dict[str, Any]:
        """``Fn::GetAtt`` of user pools, their clients, KMS keys and EventBridge rules."""
        arn_prefix = f"arn:aws:{{}}:{self.region}:{self.account_id}"
        if kind == EVENTS_RULE_TYPE:  # AWS-shaped: the runtime's SesEventBus plays the rule
            return {"Arn": f"{arn_prefix.format('events')}:rule/{name}"}
        if kind == USER_POOL_TYPE:
            # the pool moto created (its id is random, recorded by provision), else AWS-shaped
            pool_id = self.ref(resource)
            return {
                "Arn": f"{arn_prefix.format('cognito-idp')}:userpool/{pool_id}",
                "ProviderName": f"cognito-idp.{self.region}.amazonaws.com/{pool_id}",
                "ProviderURL": f"https://cognito-idp.{self.region}.amazonaws.com/{pool_id}",
                "UserPoolId": pool_id,
            }
        if kind == USER_POOL_CLIENT_TYPE:
            return {"ClientId": self.ref(resource), "Name": name}
        if kind == "AWS::KMS::Key":
            return {"Arn": f"{arn_prefix.format('kms')}:key/{name}", "KeyId": name}
        return {}

    def condition(self, name: str) -> bool:
        """Evaluate a named condition once (cycles are template errors)."""
        if name in self._conditions:
            return self._conditions[name]
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise IntrinsicError(f"unknown condition {name}")
        if name in self._evaluating:
            raise IntrinsicError(f"condition {name} refers to itself")
        self._evaluating.add(name)
        try:
            value = self._resolver.evaluate_condition(conditions[name])
        finally:
            self._evaluating.discard(name)
        self._conditions[name] = value
        return value

    def find_in_map(self, map_name: str, top_key: str, second_key: str) -> Any:
        try:
            return self.template["Mappings"][map_name][top_key][second_key]
        except (KeyError, TypeError):
            raise IntrinsicError(f"Fn::FindInMap: no {map_name}/{top_key}/{second_key}") from None

    # ------------------------------------------------------------- resources
    def resolve(self, value: Any) -> Any:
        """Resolve the intrinsic functions in ``value``."""
        return self._resolver.resolve(value)

    def _resource(self, logical_id: str) -> dict[str, Any]:
        try:
            return self.resources[logical_id]
        except KeyError:
            raise IntrinsicError(f"unknown parameter or resource {logical_id}") from None

    def _properties(self, logical_id: str) -> dict[str, Any]:
        return dict(self._resource(logical_id).get("Properties") or {})

    def is_created(self, logical_id: str) -> bool:
        """Whether the resource's ``Condition`` (if any) holds."""
        condition = self._resource(logical_id).get("Condition")
        return condition is None or self.condition(str(condition))

    def of_type(self, *types: str, honour_conditions: bool = True) -> list[str]:
        """Logical ids of the resources of the given types, in template order."""
        return [
            logical_id
            for logical_id, resource in self.resources.items()
            if resource.get("Type") in types and (not honour_conditions or self.is_created(logical_id))
        ]

    def physical_name(self, logical_id: str) -> str:
        """The local physical name: the template's explicit name, else the logical id."""
        resource = self._resource(logical_id)
        kind = resource.get("Type", "")
        name_property = {
            "AWS::DynamoDB::Table": "TableName",
            "AWS::Serverless::SimpleTable": "TableName",
            QUEUE_TYPE: "QueueName",
            "AWS::Serverless::Function": "FunctionName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::Logs::LogGroup": "LogGroupName",
            CONFIGURATION_SET_TYPE: "Name",
            SECRET_TYPE: "Name",
            PARAMETER_TYPE: "Name",
            BUCKET_TYPE: "BucketName",
            "AWS::CloudFront::Function": "Name",
        }.get(kind)
        properties = resource.get("Properties") or {}
        if name_property and name_property in properties:
            return str(self.resolve(properties[name_property]))
        if kind == BUCKET_TYPE:
            return logical_id.lower()  # bucket names are lower case
        if kind == QUEUE_TYPE and _truthy(self.resolve(properties.get("FifoQueue", False))):
            return f"{logical_id}.fifo"  # CloudFormation's generated FIFO names end in .fifo, too
        return logical_id

    def queue_url(self, logical_id: str) -> str:
        """The queue URL: the endpoint's (after :meth:`provision`), else the AWS-shaped one."""
        if logical_id in self._queue_urls:
            return self._queue_urls[logical_id]
        name = self.physical_name(logical_id)
        return f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{name}"

    def record_physical_id(self, logical_id: str, physical_id: str) -> None:
        """Remember the id the endpoint gave a created resource (a user pool's, an app
        client's): ``Ref`` then resolves to it."""
        self._physical_ids[logical_id] = physical_id

    def record_queue_url(self, logical_id: str, url: str) -> None:
        """Remember the URL the endpoint returned for a created queue."""
        self._queue_urls[logical_id] = url

    # ---------------------------------------------------------------- queues
    @property
    def queues(self) -> dict[str, QueueSpec]:
        """Every ``AWS::SQS::Queue``, dead-letter queues before the queues that use them."""
        specs: dict[str, QueueSpec] = {}
        for logical_id in self.of_type(QUEUE_TYPE):
            raw = self._properties(logical_id)
            properties = self.resolve(raw)
            attributes = {key: _attribute(value) for key, value in properties.items() if key in _QUEUE_ATTRIBUTES}
            depends = _references(raw) | _as_set(self._resource(logical_id).get("DependsOn"))
            specs[logical_id] = QueueSpec(
                logical_id=logical_id,
                name=self.physical_name(logical_id),
                attributes=attributes,
                depends_on=frozenset(d for d in depends if d in self.resources and d != logical_id),
            )
        return {logical_id: specs[logical_id] for logical_id in _dependency_order(specs)}

    def queue_logical_id_by_arn(self, arn: str) -> str | None:
        for logical_id in self.of_type(QUEUE_TYPE):
            if self.get_att(logical_id, "Arn") == arn:
                return logical_id
        return None

    # ------------------------------------------------------------- functions
    def _function_properties(self, logical_id: str) -> dict[str, Any]:
        globals_ = dict((self.template.get("Globals") or {}).get("Function") or {})
        merged: dict[str, Any] = _sam_merge(globals_, self._properties(logical_id))
        return merged

    def function_env(self, logical_id: str) -> dict[str, str]:
        """The function's resolved environment variables (Globals merged, function wins)."""
        properties = self._function_properties(logical_id)
        variables = self.resolve((properties.get("Environment") or {}).get("Variables") or {})
        return {str(k): as_string(v) for k, v in variables.items()}

    @property
    def functions(self) -> dict[str, FunctionSpec]:
        """Every ``AWS::Serverless::Function`` by logical id."""
        result: dict[str, FunctionSpec] = {}
        for logical_id in self.of_type(*FUNCTION_TYPES):
            properties = self._function_properties(logical_id)
            code_uri = self.resolve(properties.get("CodeUri", "."))
            if not isinstance(code_uri, str):
                raise TemplateError(f"{logical_id}: only a local CodeUri directory can run locally")
            handler = self.resolve(properties.get("Handler", ""))
            if not isinstance(handler, str) or "." not in handler:
                raise TemplateError(f"{logical_id}: Handler must look like module.function")
            events = {
                name: EventSpec(
                    name=name, type=str(event.get("Type")), properties=self.resolve(event.get("Properties") or {})
                )
                for name, event in (properties.get("Events") or {}).items()
            }
            result[logical_id] = FunctionSpec(
                logical_id=logical_id,
                name=self.physical_name(logical_id),
                code_dir=(self.base_dir / code_uri).resolve(),
                handler=handler,
                runtime=str(self.resolve(properties.get("Runtime", ""))),
                timeout=int(self.resolve(properties.get("Timeout", 3))),  # Lambda's default is 3 s
                memory_size=int(self.resolve(properties.get("MemorySize", 128))),
                environment=self.function_env(logical_id),
                events=events,
                layer_dirs=self._layer_dirs(properties.get("Layers") or []),
                reserved_concurrency=_reserved_concurrency(
                    logical_id, self.resolve(properties.get("ReservedConcurrentExecutions"))
                ),
            )
        return result

    def _layer_dirs(self, layers: list[Any]) -> tuple[Path, ...]:
        """Local directories of the function's layers (``Ref`` to a LayerVersion with a local ContentUri)."""
        dirs: list[Path] = []
        for layer in layers:
            target = layer.get("Ref") if isinstance(layer, dict) else None
            resource = self.resources.get(str(target)) if target else None
            if resource and resource.get("Type") == "AWS::Serverless::LayerVersion":
                content = self.resolve((resource.get("Properties") or {}).get("ContentUri"))
                if isinstance(content, str):
                    dirs.append((self.base_dir / content).resolve())
        return tuple(dirs)

    def _api_stage(self, rest_api_id: Any) -> str:
        if isinstance(rest_api_id, str) and rest_api_id in self.resources:
            return str(self.resolve(self._properties(rest_api_id).get("StageName", "Prod")))
        return "Prod"  # SAM's implicit API (no RestApiId) deploys to the stage "Prod"

    @property
    def routes(self) -> list[RouteSpec]:
        """Every ``Api`` event (REST API, payload v1)."""
        routes: list[RouteSpec] = []
        for logical_id in self.of_type(*FUNCTION_TYPES):
            raw_events = self._function_properties(logical_id).get("Events") or {}
            for name, event in raw_events.items():
                if event.get("Type") != "Api":
                    continue
                raw_properties = event.get("Properties") or {}
                properties = self.resolve(raw_properties)
                rest_api = raw_properties.get("RestApiId")
                rest_api_id = rest_api.get("Ref") if isinstance(rest_api, dict) else rest_api
                routes.append(
                    RouteSpec(
                        function=logical_id,
                        event=name,
                        path=str(properties["Path"]),
                        method=str(properties["Method"]).lower(),
                        stage=self._api_stage(rest_api_id),
                        api=rest_api_id if isinstance(rest_api_id, str) else None,
                        authorizer=self._route_authorizer(rest_api_id, properties.get("Auth") or {}, name),
                    )
                )
        return routes

    def _api_auth(self, rest_api_id: Any) -> dict[str, Any]:
        if isinstance(rest_api_id, str) and rest_api_id in self.resources:
            return dict(self._properties(rest_api_id).get("Auth") or {})
        return {}

    def _route_authorizer(self, rest_api_id: Any, event_auth: dict[str, Any], event: str) -> str | None:
        """SAM's rule: the event's ``Auth.Authorizer`` (``NONE`` opens the route), else the
        API's ``DefaultAuthorizer``. An authorizer the local API cannot enforce is a template
        error here: a route is never served open because its guard is unknown."""
        api_auth = self._api_auth(rest_api_id)
        name = event_auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))
        if name is None or name == "NONE":
            return None
        if name == "AWS_IAM":
            raise TemplateError(f"event {event}: AWS_IAM authorization is not supported locally")
        authorizers = api_auth.get("Authorizers") or {}
        if name not in authorizers:
            raise TemplateError(f"event {event}: the API has no authorizer {name}")
        if "UserPoolArn" not in (authorizers[name] or {}):
            raise TemplateError(f"authorizer {name}: only Cognito user pool authorizers are supported locally")
        return str(name)

    def authorizer(self, api: str, name: str) -> AuthorizerSpec:
        """An API's Cognito authorizer, resolved now (after provisioning: the pools' ids)."""
        raw = (self._api_auth(api).get("Authorizers") or {})[name]
        resolved = self.resolve(raw)
        arns = resolved["UserPoolArn"]
        identity = resolved.get("Identity") or {}
        return AuthorizerSpec(
            name=name,
            user_pool_arns=tuple(str(arn) for arn in (arns if isinstance(arns, list) else [arns])),
            header=str(identity.get("Header", "Authorization")),
            validation_expression=identity.get("ValidationExpression"),
        )

    @property
    def sqs_sources(self) -> list[SqsSourceSpec]:
        """Every ``SQS`` event (event source mapping)."""
        sources: list[SqsSourceSpec] = []
        for function in self.functions.values():
            for event in function.events.values():
                if event.type != "SQS":
                    continue
                properties = event.properties
                sources.append(
                    SqsSourceSpec(
                        function=function.logical_id,
                        event=event.name,
                        queue_arn=str(properties["Queue"]),
                        batch_size=int(properties.get("BatchSize", 10)),
                        batching_window=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in (properties.get("FunctionResponseTypes") or []),
                        enabled=_truthy(properties.get("Enabled", True)),
                        maximum_concurrency=_maximum_concurrency(
                            f"{function.logical_id}.{event.name}", properties.get("ScalingConfig")
                        ),
                    )
                )
        return sources

    @property
    def schedules(self) -> list[ScheduleSpec]:
        """Every ``ScheduleV2`` and ``Schedule`` event; the local name is the event's name."""
        schedules: list[ScheduleSpec] = []
        for function in self.functions.values():
            for event in function.events.values():
                if event.type not in SCHEDULE_EVENT_TYPES:
                    continue
                properties = event.properties
                if event.type == "ScheduleV2":
                    enabled = str(properties.get("State", "ENABLED")).upper() != "DISABLED"
                    timezone = str(properties.get("ScheduleExpressionTimezone") or "UTC")
                else:  # EventBridge rules are always evaluated in UTC
                    enabled = (
                        _truthy(properties.get("Enabled", True))
                        and str(properties.get("State", "ENABLED")).upper() != "DISABLED"
                    )
                    timezone = "UTC"
                raw_input = properties.get("Input")
                schedules.append(
                    ScheduleSpec(
                        name=str(properties.get("Name") or event.name),
                        function=function.logical_id,
                        event_type=event.type,
                        expression=str(properties["Schedule" if event.type == "Schedule" else "ScheduleExpression"]),
                        timezone=timezone,
                        input=None if raw_input is None else str(raw_input),
                        enabled=enabled,
                        group=str(properties.get("GroupName") or "default"),
                        description=str(properties.get("Description") or ""),
                    )
                )
        return schedules

    @property
    def event_rules(self) -> list[EventRuleSpec]:
        """Every ``EventBridgeRule`` (``CloudWatchEvent``) event with an event pattern."""
        rules: list[EventRuleSpec] = []
        for function in self.functions.values():
            for event in function.events.values():
                if event.type not in EVENT_RULE_TYPES:
                    continue
                properties = event.properties
                pattern = properties.get("Pattern")
                if not isinstance(pattern, dict) or not pattern:
                    raise TemplateError(f"{function.logical_id}.{event.name}: an EventBridge rule needs a Pattern")
                bus = str(properties.get("EventBusName") or "default").rpartition("/")[2]
                rules.append(
                    EventRuleSpec(
                        name=str(properties.get("RuleName") or event.name),
                        function=function.logical_id,
                        pattern=pattern,
                        bus=bus,
                        enabled=_truthy(properties.get("Enabled", True))
                        and str(properties.get("State", "ENABLED")).upper() != "DISABLED",
                    )
                )
        return rules + self._queue_rules()

    def _queue_rules(self) -> list[EventRuleSpec]:
        """Every ``AWS::Events::Rule`` with an event pattern, one spec per target that is one
        of the stack's queues (other targets are refused: nothing local would receive them)."""
        rules: list[EventRuleSpec] = []
        for logical_id in self.of_type(EVENTS_RULE_TYPE):
            properties = self.resolve(self._properties(logical_id))
            pattern = properties.get("EventPattern")
            if not isinstance(pattern, dict) or not pattern:
                raise TemplateError(f"{logical_id}: only rules with an EventPattern are supported locally")
            bus = str(properties.get("EventBusName") or "default").rpartition("/")[2]
            for target in properties.get("Targets") or []:
                queue = self.queue_logical_id_by_arn(str(target.get("Arn")))
                if queue is None:
                    raise TemplateError(f"{logical_id}: target {target.get('Id')!r} is not one of the stack's queues")
                rules.append(
                    EventRuleSpec(
                        name=logical_id,
                        function=None,
                        pattern=pattern,
                        bus=bus,
                        enabled=str(properties.get("State", "ENABLED")).upper() == "ENABLED",
                        queue=queue,
                    )
                )
        return rules

    # -------------------------------------------------------------- web app
    def response_headers(self, logical_id: str | None = None) -> dict[str, str]:
        """The headers an ``AWS::CloudFront::ResponseHeadersPolicy`` puts on every answer, as CloudFront writes them.

        ``logical_id`` defaults to the template's only such policy (none: no headers). The
        security headers (HSTS, CSP, nosniff, frame options, referrer policy, XSS protection)
        and the custom headers are rendered; CORS headers depend on the request and are not.
        The local server sends them too, so what the template declares is what is tested.
        """
        if logical_id is None:
            policies = self.of_type(RESPONSE_HEADERS_POLICY_TYPE)
            if not policies:
                return {}
            if len(policies) > 1:
                raise TemplateError(f"several response headers policies ({', '.join(policies)}): name one")
            logical_id = policies[0]
        if self._resource(logical_id).get("Type") != RESPONSE_HEADERS_POLICY_TYPE:
            raise TemplateError(f"{logical_id} is not an {RESPONSE_HEADERS_POLICY_TYPE}")
        config = self.resolve(self._properties(logical_id).get("ResponseHeadersPolicyConfig") or {})
        return _policy_headers(config)

    # ------------------------------------------------------------ provision
    def provision(
        self,
        session: boto3.session.Session | None = None,
        *,
        endpoint_url: str | None = None,
        client_for: Callable[[str], Any] | None = None,
    ) -> Provisioned:
        """Create the stack's tables, queues, SES identities, secrets and parameters.

        Pass nothing to use boto3's defaults (e.g. under moto's ``mock_aws``), a session and/or
        an ``endpoint_url`` (e.g. a moto server), or a factory of clients by service name
        (``client_for=runtime.client``).
        """
        from .provision import provision

        return provision(self, session=session, endpoint_url=endpoint_url, client_for=client_for)


_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)


def _policy_headers(config: Mapping[str, Any]) -> dict[str, str]:
    """A ``ResponseHeadersPolicyConfig``'s security and custom headers, rendered as CloudFront does."""
    headers: dict[str, str] = {}
    security = config.get("SecurityHeadersConfig") or {}
    hsts = security.get("StrictTransportSecurity")
    if hsts:
        value = f"max-age={int(hsts['AccessControlMaxAgeSec'])}"
        if _truthy(hsts.get("IncludeSubdomains", False)):
            value += "; includeSubDomains"
        if _truthy(hsts.get("Preload", False)):
            value += "; preload"
        headers["Strict-Transport-Security"] = value
    if security.get("ContentSecurityPolicy"):
        headers["Content-Security-Policy"] = str(security["ContentSecurityPolicy"]["ContentSecurityPolicy"])
    if security.get("ContentTypeOptions") is not None:
        headers["X-Content-Type-Options"] = "nosniff"
    if security.get("FrameOptions"):
        headers["X-Frame-Options"] = str(security["FrameOptions"]["FrameOption"])
    if security.get("ReferrerPolicy"):
        headers["Referrer-Policy"] = str(security["ReferrerPolicy"]["ReferrerPolicy"])
    xss = security.get("XSSProtection")
    if xss:
        value = "1" if _truthy(xss.get("Protection", False)) else "0"
        if value == "1" and _truthy(xss.get("ModeBlock", False)):
            value += "; mode=block"
        elif value == "1" and xss.get("ReportUri"):
            value += f"; report={xss['ReportUri']}"
        headers["X-XSS-Protection"] = value
    for item in (config.get("CustomHeadersConfig") or {}).get("Items") or []:
        headers[str(item["Header"])] = as_string(item["Value"])
    return headers


def _attribute(value: Any) -> str:
    """A CloudFormation property value as an SQS attribute string (policies as JSON)."""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return as_string(value)


def _integer(where: str, value: Any) -> int:
    """An integer property (a ``Ref`` to a Number parameter resolves to a string)."""
    if isinstance(value, bool):
        raise TemplateError(f"{where} must be an integer, not {value!r}")
    try:
        return int(str(value).strip())
    except ValueError:
        raise TemplateError(f"{where} must be an integer, not {value!r}") from None


def _maximum_concurrency(where: str, scaling_config: Any) -> int | None:
    """``ScalingConfig.MaximumConcurrency`` of an SQS event, validated like a deploy (2 to 1000)."""
    if scaling_config is None:
        return None
    if not isinstance(scaling_config, dict):
        raise TemplateError(f"{where}: ScalingConfig must be a map, not {scaling_config!r}")
    value = scaling_config.get("MaximumConcurrency")
    if value is None:
        return None
    maximum = _integer(f"{where}: ScalingConfig.MaximumConcurrency", value)
    if not 2 <= maximum <= 1000:
        raise TemplateError(f"{where}: ScalingConfig.MaximumConcurrency is {maximum}; Lambda accepts 2 to 1000")
    return maximum


def _reserved_concurrency(logical_id: str, value: Any) -> int | None:
    """``ReservedConcurrentExecutions`` (0 or more), if the function sets it."""
    if value is None or value is NO_VALUE:
        return None
    reserved = _integer(f"{logical_id}: ReservedConcurrentExecutions", value)
    if reserved < 0:
        raise TemplateError(f"{logical_id}: ReservedConcurrentExecutions is {reserved}; it cannot be negative")
    return reserved


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _as_set(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {str(v) for v in value}
    return set()


def _references(value: Any) -> set[str]:
    """Logical ids referenced (Ref, GetAtt, Sub variables) anywhere in ``value``."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, argument in value.items():
            if key == "Ref" and isinstance(argument, str):
                found.add(argument)
            elif key == "Fn::GetAtt":
                target = argument.split(".", 1)[0] if isinstance(argument, str) else argument[0]
                found.add(str(target))
            elif key == "Fn::Sub":
                text = argument if isinstance(argument, str) else argument[0]
                found |= {m.split(".", 1)[0].strip() for m in re.findall(r"\$\{([^!}][^}]*)\}", str(text))}
            found |= _references(argument)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def _dependency_order(specs: Mapping[str, QueueSpec]) -> list[str]:
    """Topological order (dependencies first, else template order); cycles are errors."""
    ordered: list[str] = []
    state: dict[str, str] = {}

    def visit(logical_id: str) -> None:
        if state.get(logical_id) == "done":
            return
        if state.get(logical_id) == "visiting":
            raise TemplateError(f"circular dependency involving {logical_id}")
        state[logical_id] = "visiting"
        for dependency in sorted(specs[logical_id].depends_on):
            if dependency in specs:
                visit(dependency)
        state[logical_id] = "done"
        ordered.append(logical_id)

    for logical_id in specs:
        visit(logical_id)
    return ordered


def _sam_merge(global_value: Any, local_value: Any) -> Any:
    """SAM Globals: maps merge recursively, lists concatenate (globals first), scalars: local wins."""
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = _sam_merge(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return [*global_value, *local_value]
    return local_value
