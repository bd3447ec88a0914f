"""The alarms and the dashboard in template.yaml, held to the metrics the code and AWS emit.

An alarm on a metric nobody emits never fires, and a graph of one stays empty, without a
word from CloudFormation or CloudWatch: a name, a namespace or a dimension set that is one
letter off is a different metric. So every metric an alarm or the dashboard names is checked
against what is read from the code:

- task metrics (namespace ``Mailroom``, dimensions exactly {service, task_type}): the names
  and task types of ``mailroom.observability`` (``TASK_METRICS``, ``TASK_TYPES``), the
  service being the one that handles the task type;
- a function's own metrics (dimensions exactly {service}): the ``metrics.add_metric(name=...)``
  calls in its app.py and in the layer functions it calls, the service being its
  ``POWERTOOLS_SERVICE_NAME``;
- ``single_metric`` metrics (their own dimension set, e.g. ``SesBounces``): the call and its
  dimension names in the function's app.py;
- Powertools' ``ColdStart`` ({function_name, service}) of a handler that captures it;
- AWS's metrics: the names AWS publishes in the namespace, with the dimensions it uses, each
  naming a resource of the right type in the template (``AWS_METRICS`` below).

Each check is a function that lists what it finds; each is also run on a broken copy of the
template (or of what was read from the code), so a check that finds nothing cannot pass.
"""

from __future__ import annotations

import ast
import copy
import json
import operator
import re
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from mailroom.logic.feedback import Feedback
from mailroom.observability import TASK_METRICS_OF, TASK_TYPES, TaskMetrics
from mailroom_local.template import Stack
from tests.support import ROOT, TEMPLATE

Template = dict[str, Any]
TOPIC = {"Ref": "AlarmTopic"}
DASHBOARD = "MailroomDashboard"
LAYER = ROOT / "layers/mailroom/mailroom"
# The task types that send mails (their workers emit MailsSent, MailsFailed, ...).
MAIL_TASK_TYPES = ("confirmation", "welcome", "newsletter")
ANY: Any = None  # a dimension whose value a SEARCH expression leaves open

# The AWS metrics the alarms and the dashboard may use: namespace -> (metric names AWS
# publishes there, the one dimension set used with them). AWS/SES's are account-wide: none.
AWS_METRICS: dict[str, tuple[set[str], set[str]]] = {
    "AWS/SQS": (
        {
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateAgeOfOldestMessage",
        },
        {"QueueName"},
    ),
    "AWS/Lambda": ({"Errors", "Throttles", "Invocations", "Duration", "ConcurrentExecutions"}, {"FunctionName"}),
    "AWS/ApiGateway": ({"Count", "4XXError", "5XXError", "Latency", "IntegrationLatency"}, {"ApiName", "Stage"}),
    "AWS/SES": (
        {"Send", "Delivery", "Bounce", "Complaint", "Reject", "Reputation.BounceRate", "Reputation.ComplaintRate"},
        set(),
    ),
}


@pytest.fixture(scope="module")
def stack() -> Stack:
    return Stack.load(TEMPLATE)


@pytest.fixture
def raw(stack: Stack) -> Template:
    """A copy of the template to break."""
    return copy.deepcopy(stack.template)


@pytest.fixture(scope="module")
def code(stack: Stack) -> Code:
    return read_code(stack.template)


def resources(raw: Template, *types: str) -> dict[str, dict[str, Any]]:
    return {key: resource for key, resource in raw["Resources"].items() if resource["Type"] in types}


def alarms(raw: Template) -> dict[str, dict[str, Any]]:
    return {key: resource["Properties"] for key, resource in resources(raw, "AWS::CloudWatch::Alarm").items()}


# ------------------------------------------------------------------ what the code emits
@dataclass
class Code:
    """The metrics contract, read from the code and the template's function settings."""

    namespaces: dict[str, str]  # service (POWERTOOLS_SERVICE_NAME) -> its metrics namespace
    functions: dict[str, str]  # service -> the function's logical id
    function_metrics: dict[str, set[str]]  # service -> names of its metrics.add_metric calls
    single_metrics: dict[tuple[str, str], set[str]]  # (service, name) -> the dimension names
    cold_starts: set[str]  # services whose handler records Powertools' ColdStart
    task_types: dict[str, str] = field(default_factory=lambda: dict(TASK_TYPES))
    # task type -> the task metrics it emits (TaskMetrics.add refuses the others)
    task_metrics: dict[str, set[str]] = field(default_factory=lambda: {k: set(v) for k, v in TASK_METRICS_OF.items()})
    # the values of single_metric dimensions other than service and task_type
    dimension_values: dict[str, set[str]] = field(default_factory=lambda: {"bounce": bounce_types()})


def bounce_types() -> set[str]:
    """The values of SesBounces' ``bounce`` dimension: ``Feedback.bounce``'s literals."""
    hint = typing.get_type_hints(Feedback)["bounce"]
    return {value for arg in typing.get_args(hint) for value in typing.get_args(arg) if isinstance(value, str)}


def _calls(tree: ast.AST, receiver: str, method: str) -> Iterator[ast.Call]:
    """``<receiver>.<method>(...)`` calls in ``tree``."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == method
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == receiver
        ):
            yield node


def _constant_keyword(call: ast.Call, name: str) -> Any:
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def _metric_names(tree: ast.AST) -> set[str]:
    """The names of ``metrics.add_metric(name="<constant>", ...)`` calls in ``tree``."""
    return {name for call in _calls(tree, "metrics", "add_metric") if (name := _constant_keyword(call, "name"))}


def _layer_functions() -> list[ast.FunctionDef]:
    return [
        node
        for module in sorted(LAYER.rglob("*.py"))
        for node in ast.walk(ast.parse(module.read_text()))
        if isinstance(node, ast.FunctionDef)
    ]


def _single_metrics(tree: ast.Module) -> dict[str, set[str]]:
    """``with single_metric(name="<constant>", default_dimensions=...) as m: m.add_dimension(...)``:
    each metric's dimension names (the constant keys of its default dimensions, a dict literal
    or a variable the enclosing function assigns one to, and the names it adds)."""
    found: dict[str, set[str]] = {}
    for function in (node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)):
        assigned = {
            target.id: node.value
            for node in ast.walk(function)
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for with_ in (node for node in ast.walk(function) if isinstance(node, ast.With)):
            for item in with_.items:
                call = item.context_expr
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
                    continue
                if call.func.id != "single_metric" or not (name := _constant_keyword(call, "name")):
                    continue
                defaults = next((k.value for k in call.keywords if k.arg == "default_dimensions"), None)
                if isinstance(defaults, ast.Name):
                    defaults = assigned.get(defaults.id)
                keys = {
                    key.value
                    for node in (ast.walk(defaults) if defaults is not None else ())
                    if isinstance(node, ast.Dict)
                    for key in node.keys
                    if isinstance(key, ast.Constant) and isinstance(key.value, str)
                }
                handle = item.optional_vars.id if isinstance(item.optional_vars, ast.Name) else ""
                added = {
                    dimension
                    for statement in with_.body
                    for add in _calls(statement, handle, "add_dimension")
                    if (dimension := _constant_keyword(add, "name"))
                }
                found[name] = keys | added
    return found


def _captures_cold_starts(tree: ast.Module) -> bool:
    """Whether a decorator records the cold start: ``@log_metrics`` of mailroom.observability
    (if it does), or ``@metrics.log_metrics(capture_cold_start_metric=True)``."""
    observability = ast.parse((LAYER / "observability.py").read_text())
    (wrapper,) = [n for n in ast.walk(observability) if isinstance(n, ast.FunctionDef) and n.name == "log_metrics"]

    def captures(node: ast.AST) -> bool:
        return any(
            isinstance(n, ast.keyword) and n.arg == "capture_cold_start_metric" and getattr(n.value, "value", 0) is True
            for n in ast.walk(node)
        )

    for function in (node for node in tree.body if isinstance(node, ast.FunctionDef)):
        for decorator in function.decorator_list:
            if isinstance(decorator, ast.Name) and decorator.id == "log_metrics" and captures(wrapper):
                return True
            if captures(decorator):
                return True
    return False


def read_code(raw: Template) -> Code:
    globals_ = raw["Globals"]["Function"]["Environment"]["Variables"]
    code = Code(namespaces={}, functions={}, function_metrics={}, single_metrics={}, cold_starts=set())
    layer = _layer_functions()
    for logical_id, resource in resources(raw, "AWS::Serverless::Function").items():
        properties = resource["Properties"]
        variables = {**globals_, **((properties.get("Environment") or {}).get("Variables") or {})}
        service = variables["POWERTOOLS_SERVICE_NAME"]
        app = (ROOT / properties["CodeUri"] / "app.py").read_text()
        tree = ast.parse(app)
        code.namespaces[service] = variables["POWERTOOLS_METRICS_NAMESPACE"]
        code.functions[service] = logical_id
        code.function_metrics[service] = _metric_names(tree).union(
            *(_metric_names(node) for node in layer if re.search(rf"\b{node.name}\(", app))
        )
        for name, dimensions in _single_metrics(tree).items():
            code.single_metrics[(service, name)] = dimensions
        if _captures_cold_starts(tree):
            code.cold_starts.add(service)
    return code


# ------------------------------------------------------------------ the check of one metric
@dataclass
class Metric:
    where: str  # the alarm, or the dashboard widget
    namespace: str
    name: str
    dimensions: dict[str, Any]  # name -> a string, an intrinsic ({"Ref": ...}, {"Fn::GetAtt": ...}) or ANY

    def __str__(self) -> str:
        return f"{self.where}: {self.namespace} {self.name} {json.dumps(self.dimensions, sort_keys=True)}"


def _matches(value: Any, allowed: Any) -> bool:
    return bool(allowed) if value is ANY else value in allowed


def _mailroom_emits(code: Code, metric: Metric) -> bool:
    dimensions = metric.dimensions
    if "service" not in dimensions:
        return False
    services = list(code.namespaces) if dimensions["service"] is ANY else [dimensions["service"]]
    rest = {key: value for key, value in dimensions.items() if key != "service"}
    for service in services:
        if code.namespaces.get(service) != metric.namespace:
            continue
        own_task_types = [task_type for task_type, handler in code.task_types.items() if handler == service]
        emitting = [
            task_type
            for task_type, handler in code.task_types.items()
            if handler == service and metric.name in code.task_metrics.get(task_type, set())
        ]
        if set(rest) == {"task_type"} and emitting and _matches(rest["task_type"], emitting):
            return True
        if not rest and metric.name in code.function_metrics[service]:
            return True
        if (
            set(rest) == {"function_name"}
            and metric.name == "ColdStart"
            and service in code.cold_starts
            and _matches(rest["function_name"], [{"Ref": code.functions[service]}])
        ):
            return True
        if set(dimensions) == code.single_metrics.get((service, metric.name)) and all(
            _matches(value, own_task_types if key == "task_type" else code.dimension_values.get(key, ()))
            for key, value in rest.items()
        ):
            return True
    return False


def _names(raw: Template, value: Any, kind: str, attribute: str | None) -> bool:
    """Whether ``value`` is ``!Ref <a resource of kind>`` (attribute None) or ``!GetAtt <it>.<attribute>``."""
    if value is ANY:
        return True
    if attribute is None:
        logical_id = value.get("Ref") if isinstance(value, dict) and list(value) == ["Ref"] else None
    else:
        get_att = value.get("Fn::GetAtt") if isinstance(value, dict) and list(value) == ["Fn::GetAtt"] else None
        logical_id = get_att[0] if get_att and get_att[1] == attribute else None
    found: str = raw["Resources"].get(logical_id, {}).get("Type", "")
    return found == kind


def _aws_emits(raw: Template, metric: Metric) -> bool:
    names, dimension_set = AWS_METRICS.get(metric.namespace, (set(), set()))
    dimensions = metric.dimensions
    if metric.name not in names or set(dimensions) != dimension_set:
        return False
    if metric.namespace == "AWS/SQS":
        return _names(raw, dimensions["QueueName"], "AWS::SQS::Queue", "QueueName")
    if metric.namespace == "AWS/Lambda":
        return _names(raw, dimensions["FunctionName"], "AWS::Serverless::Function", None)
    if metric.namespace == "AWS/ApiGateway":
        # a REST API's metrics name it by its name, which SAM sets to the stack's unless given
        return any(
            _matches(dimensions["ApiName"], [api["Properties"].get("Name", {"Ref": "AWS::StackName"})])
            and _matches(dimensions["Stage"], [api["Properties"]["StageName"]])
            for api in resources(raw, "AWS::Serverless::Api").values()
        )
    return True  # AWS/SES: account-wide, no dimension


def metric_problems(raw: Template, code: Code, metrics: list[Metric]) -> list[str]:
    return [
        f"nobody emits {metric}"
        for metric in metrics
        if not (_aws_emits(raw, metric) if metric.namespace.startswith("AWS/") else _mailroom_emits(code, metric))
    ]


# ------------------------------------------------------------------ the alarms' metrics
def _expression_names(expression: str) -> set[str]:
    """The ids a metric math expression uses (its functions' names aside)."""
    tree = ast.parse(expression, mode="eval")
    functions = {
        node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} - functions


def alarm_metrics(raw: Template) -> tuple[list[Metric], list[str]]:
    """Every metric an alarm watches (each one in a metric math alarm), and what is wrong with
    the math: an id used but not defined, not exactly one result."""
    found: list[Metric] = []
    problems: list[str] = []
    for logical_id, alarm in alarms(raw).items():
        if "MetricName" in alarm:
            dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
            found.append(Metric(logical_id, alarm["Namespace"], alarm["MetricName"], dimensions))
            continue
        queries = alarm["Metrics"]
        ids = {query["Id"] for query in queries}
        for query in queries:
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                dimensions = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                found.append(Metric(logical_id, metric["Namespace"], metric["MetricName"], dimensions))
            elif unknown := _expression_names(query["Expression"]) - ids:
                problems.append(f"{logical_id}: {query['Id']} uses {sorted(unknown)}, which it does not define")
        if [query.get("ReturnData", True) for query in queries].count(True) != 1:
            problems.append(f"{logical_id}: not exactly one query returns data")
    return found, problems


def alarm_problems(raw: Template, code: Code) -> list[str]:
    found, problems = alarm_metrics(raw)
    return problems + metric_problems(raw, code, found)


def test_every_alarm_names_a_metric_the_code_or_aws_emits(stack: Stack, code: Code) -> None:
    assert alarm_problems(stack.template, code) == []
    found, _ = alarm_metrics(stack.template)
    assert {metric.namespace for metric in found} == {"Mailroom", *AWS_METRICS}
    # the contract's task types are handled by functions of this template
    assert set(code.task_types.values()) <= set(code.functions)


def _properties(raw: Template, alarm: str) -> dict[str, Any]:
    properties: dict[str, Any] = raw["Resources"][alarm]["Properties"]
    return properties


def _dimension(raw: Template, alarm: str, name: str, query: str | None = None) -> dict[str, Any]:
    """One dimension of an alarm's metric (of its query ``query`` in a metric math alarm)."""
    metric = _stat_metric(raw, alarm, query) if query else _properties(raw, alarm)
    dimension: dict[str, Any] = next(d for d in metric["Dimensions"] if d["Name"] == name)
    return dimension


def _stat_metric(raw: Template, alarm: str, query: str) -> dict[str, Any]:
    metric: dict[str, Any] = next(q for q in _properties(raw, alarm)["Metrics"] if q["Id"] == query)["MetricStat"][
        "Metric"
    ]
    return metric


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    target[key] = value


THROTTLED = "NewsletterMailsThrottledAlarm"
ALARM_BREAKAGES: dict[str, tuple[str, Callable[[Template], None]]] = {
    "a misspelt task metric": (THROTTLED, lambda raw: _set(_properties(raw, THROTTLED), "MetricName", "MailThrottled")),
    "a task type nobody records": (
        THROTTLED,
        lambda raw: _set(_dimension(raw, THROTTLED, "task_type"), "Value", "newsletters"),
    ),
    "a task type of another service": (
        THROTTLED,
        lambda raw: _set(_dimension(raw, THROTTLED, "service"), "Value", "welcome-worker"),
    ),
    "a dimension missing": (
        THROTTLED,
        lambda raw: _properties(raw, THROTTLED)["Dimensions"].remove(_dimension(raw, THROTTLED, "task_type")),
    ),
    "a dimension too many": (
        "RateLimitErrorsAlarm",
        lambda raw: _properties(raw, "RateLimitErrorsAlarm")["Dimensions"].append(
            {"Name": "task_type", "Value": "confirmation"}
        ),
    ),
    "a function metric of another function": (
        "RateLimitErrorsAlarm",
        lambda raw: _set(_dimension(raw, "RateLimitErrorsAlarm", "service"), "Value", "admin"),
    ),
    "another namespace": (
        "RateLimitErrorsAlarm",
        lambda raw: _set(_properties(raw, "RateLimitErrorsAlarm"), "Namespace", "MailRoom"),
    ),
    "a misspelt metric inside metric math": (
        "NewsletterSendErrorRateAlarm",
        lambda raw: _set(_stat_metric(raw, "NewsletterSendErrorRateAlarm", "failed"), "MetricName", "MailFailed"),
    ),
    "a task type nobody records inside metric math": (
        "ConfirmationSendErrorRateAlarm",
        lambda raw: _set(_dimension(raw, "ConfirmationSendErrorRateAlarm", "task_type", "sent"), "Value", "confirm"),
    ),
    "an undefined id in metric math": (
        "ConfirmationSendErrorRateAlarm",
        lambda raw: _set(
            next(q for q in _properties(raw, "ConfirmationSendErrorRateAlarm")["Metrics"] if q["Id"] == "rate"),
            "Expression",
            "failed / total",
        ),
    ),
    "a metric AWS does not publish": (
        "WelcomeQueueAgeAlarm",
        lambda raw: _set(_properties(raw, "WelcomeQueueAgeAlarm"), "MetricName", "ApproximateAgeOfOldestMessages"),
    ),
    "a queue named by its ARN": (
        "WelcomeQueueAgeAlarm",
        lambda raw: _set(
            _dimension(raw, "WelcomeQueueAgeAlarm", "QueueName"), "Value", {"Fn::GetAtt": ["WelcomeQueue", "Arn"]}
        ),
    ),
    "a function that is a queue": (
        "WelcomeErrorsAlarm",
        lambda raw: _set(_dimension(raw, "WelcomeErrorsAlarm", "FunctionName"), "Value", {"Ref": "WelcomeQueue"}),
    ),
    "another API stage": (
        "ApiErrorRateAlarm",
        lambda raw: _set(_dimension(raw, "ApiErrorRateAlarm", "Stage", "errors"), "Value", "prod"),
    ),
    "an SES metric with a dimension": (
        "SesBounceRateAlarm",
        lambda raw: _set(
            _properties(raw, "SesBounceRateAlarm"),
            "Dimensions",
            [{"Name": "ses:configuration-set", "Value": {"Ref": "ConfigurationSet"}}],
        ),
    ),
}


@pytest.mark.parametrize("breakage", list(ALARM_BREAKAGES))
def test_the_alarm_check_finds_a_metric_nobody_emits(raw: Template, code: Code, breakage: str) -> None:
    alarm, breaks = ALARM_BREAKAGES[breakage]
    breaks(raw)
    problems = alarm_problems(raw, code)
    assert problems, breakage
    assert all(problem.startswith(f"nobody emits {alarm}:") or problem.startswith(f"{alarm}:") for problem in problems)


def test_the_alarm_check_reads_the_contract_from_the_code(stack: Stack, code: Code) -> None:
    assert alarm_problems(stack.template, code) == []
    # the registration function stops emitting RateLimitErrors and Errors; TaskMetrics stops knowing MailsThrottled
    code_without = replace(code, function_metrics={**code.function_metrics, "registration": set()})
    assert sorted(p.split(":")[0] for p in alarm_problems(stack.template, code_without)) == [
        "nobody emits RateLimitErrorsAlarm",
        "nobody emits RegistrationErrorsAlarm",
    ]
    code_without = replace(code, task_metrics={k: v - {"MailsThrottled"} for k, v in code.task_metrics.items()})
    assert [p.split(":")[0] for p in alarm_problems(stack.template, code_without)] == [
        "nobody emits NewsletterMailsThrottledAlarm"
    ]
    # what is read from the code: the function metrics of the registration and the auth
    # function, SesBounces' dimensions, the cold starts
    assert {"Registrations", "RateLimitErrors", "HoneypotHits", "RejectedRequests"} <= code.function_metrics[
        "registration"
    ]
    assert {"AdminSignIns", "AdminSignInsRefused"} <= code.function_metrics["auth"]
    assert code.single_metrics[("ses-events", "SesBounces")] == {"service", "task_type", "bounce"}
    assert code.dimension_values["bounce"]
    assert code.cold_starts == set(code.functions)


def test_task_metrics_carry_exactly_the_service_and_the_task_type(capsys: pytest.CaptureFixture[str]) -> None:
    # the contract the checks assume, as Powertools serializes it (EMF)
    task_metrics = TaskMetrics()
    task_metrics.add("confirmation", "MailsSent", 1)
    task_metrics.add("welcome", "MailsSent", 1)
    task_metrics.flush()
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(blob["task_type"] for blob in blobs) == ["confirmation", "welcome"]
    for blob in blobs:
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        assert [sorted(dimensions) for dimensions in directive["Dimensions"]] == [["service", "task_type"]]
    with pytest.raises(ValueError, match="no task metric"):
        task_metrics.add("confirmation", "MailSent", 1)
    with pytest.raises(ValueError, match="no task metric"):  # a metric of another task type
        task_metrics.add("ses_event", "TasksDeadLettered", 1)


def test_function_metrics_carry_only_the_service() -> None:
    # metrics.add_metric's set is {service} only if nobody adds a dimension to that object
    sources = [*sorted((ROOT / "functions").glob("*/app.py")), *sorted(LAYER.rglob("*.py"))]
    extra = [
        f"{path.relative_to(ROOT)}:{call.lineno}"
        for path in sources
        for method in ("set_default_dimensions", "add_dimension")
        for call in _calls(ast.parse(path.read_text()), "metrics", method)
    ]
    assert extra == []


# ------------------------------------------------------------------ the dashboard
SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")
PLACEHOLDER = re.compile(r"@\{([^}]+)\}@")
SEARCH = re.compile(r"SEARCH\('\{([^}]+)\} MetricName=\"([^\"]+)\"', '\w+', \d+\)")


def _substitute(text: str) -> str:
    """The Fn::Sub string with each ${X} as a placeholder string "@{X}@" (quoted where it
    stands outside a JSON string, as a number parameter does)."""
    out: list[str] = []
    in_string = escaped = False
    position = 0
    while position < len(text):
        match = SUB_VARIABLE.match(text, position)
        if match:
            placeholder = f"@{{{match.group(1)}}}@"
            out.append(placeholder if in_string else f'"{placeholder}"')
            position = match.end()
            continue
        char = text[position]
        if in_string and not escaped and char == '"':
            in_string = False
        elif not in_string and char == '"':
            in_string = True
        escaped = in_string and not escaped and char == "\\"
        out.append(char)
        position += 1
    return "".join(out)


def _intrinsics(value: Any) -> Any:
    """Placeholders back as the intrinsics they stand for: ``{"Ref": X}``, ``{"Fn::GetAtt": [X, A]}``."""
    if isinstance(value, dict):
        return {key: _intrinsics(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_intrinsics(item) for item in value]
    if isinstance(value, str) and (match := PLACEHOLDER.fullmatch(value)):
        name = match.group(1)
        if "." in name:
            resource, attribute = name.split(".", 1)
            return {"Fn::GetAtt": [resource, attribute]}
        return {"Ref": name}
    return value


def dashboard_body(raw: Template) -> dict[str, Any]:
    sub = raw["Resources"][DASHBOARD]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(sub, str), "DashboardBody: !Sub of one JSON string"
    body: dict[str, Any] = _intrinsics(json.loads(_substitute(sub)))
    return body


def _variable_problems(raw: Template) -> list[str]:
    """${X} that name no parameter, pseudo parameter or resource (attribute)."""
    problems = []
    for name in SUB_VARIABLE.findall(raw["Resources"][DASHBOARD]["Properties"]["DashboardBody"]["Fn::Sub"]):
        resource = name.split(".", 1)[0]
        if not (name.startswith("AWS::") or name in raw["Parameters"] or resource in raw["Resources"]):
            problems.append(f"dashboard: ${{{name}}} names nothing")
    return problems


@dataclass
class Shown:
    """One metric of a widget, with the statistic it is shown with."""

    metric: Metric
    stat: str


def _row(widget: str, row: list[Any], stat: str) -> Shown | str:
    has_options = bool(row) and isinstance(row[-1], dict)
    options = row[-1] if has_options else {}
    spec = row[:-1] if has_options else row
    if "expression" in options:
        search = SEARCH.fullmatch(options["expression"])
        if not search:
            return f"{widget}: an expression this test cannot read: {options['expression']}"
        namespace, *dimensions = search.group(1).split(",")
        return Shown(Metric(widget, namespace, search.group(2), dict.fromkeys(dimensions, ANY)), "search")
    if len(spec) < 2 or len(spec) % 2 or any(item in (".", "...") for item in spec):
        return f"{widget}: a row this test cannot read (write every row out): {row}"
    namespace, name, *pairs = spec
    metric = Metric(widget, namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True)))
    return Shown(metric, options.get("stat", stat))


def dashboard_metrics(raw: Template) -> tuple[list[Shown], list[str]]:
    """Every metric a widget shows, and what is wrong with the widgets: a row or an expression
    that cannot be read, a region other than the stack's, an alarm widget without every alarm."""
    shown: list[Shown] = []
    problems = _variable_problems(raw)
    for widget in dashboard_body(raw)["widgets"]:
        properties = widget["properties"]
        title = f"dashboard {properties.get('title')!r}"
        if widget["type"] == "alarm":
            listed = {_get_att(arn, "Arn") for arn in properties["alarms"]}
            problems += [f"{title}: {alarm} missing" for alarm in sorted(set(alarms(raw)) - listed)]
            problems += [f"{title}: {alarm} is no alarm" for alarm in sorted(listed - set(alarms(raw)))]
        if widget["type"] != "metric":
            continue
        if properties.get("region") != {"Ref": "AWS::Region"}:
            problems.append(f"{title}: region is not the stack's")
        for row in properties["metrics"]:
            found = _row(title, row, properties.get("stat", "Average"))
            if isinstance(found, str):
                problems.append(found)
            else:
                shown.append(found)
    return shown, problems


def dashboard_problems(raw: Template, code: Code) -> list[str]:
    shown, problems = dashboard_metrics(raw)
    return problems + metric_problems(raw, code, [item.metric for item in shown])


def test_every_dashboard_metric_is_one_the_code_or_aws_emits(stack: Stack, code: Code) -> None:
    assert dashboard_problems(stack.template, code) == []
    shown, _ = dashboard_metrics(stack.template)
    assert {item.metric.namespace for item in shown} == {"Mailroom", *AWS_METRICS}


# name -> (a piece of the dashboard's body, what it is replaced with, what the problems name)
DASHBOARD_BREAKAGES = {
    "a misspelt task metric": (
        '"MailsSent", "service", "newsletter-worker"',
        '"MailSent", "service", "newsletter-worker"',
        "Mailroom MailSent",
    ),
    "a task type nobody records": (
        '"task_type", "ses_event", {"label": "deliveries"}',
        '"task_type", "ses_events", {"label": "deliveries"}',
        '"task_type": "ses_events"',
    ),
    "a task metric its task type does not emit": (
        '["Mailroom", "TasksQueued", "service", "fanout", "task_type", "newsletter_fanout"',
        '["Mailroom", "TasksQueued", "service", "newsletter-dispatcher", "task_type", "newsletter_dispatch"',
        "TasksQueued",
    ),
    "a bounce type nobody records": ('"bounce", "hard"', '"bounce", "Permanent"', '"bounce": "Permanent"'),
    "a function metric of another function": (
        '"RateLimitErrors", "service", "registration"',
        '"RateLimitErrors", "service", "admin"',
        'RateLimitErrors {"service": "admin"}',
    ),
    "a cold start search with the wrong dimensions": (
        "{Mailroom,function_name,service}",
        "{Mailroom,service}",
        'ColdStart {"service": null}',
    ),
    "a misspelt cold start search": ('MetricName=\\"ColdStart\\"', 'MetricName=\\"ColdStarts\\"', "ColdStarts"),
    "a queue named by its ARN": ("${WelcomeQueue.QueueName}", "${WelcomeQueue.Arn}", '["WelcomeQueue", "Arn"]'),
    "a function that is a log group": (
        '"FunctionName", "${AdminFunction}"',
        '"FunctionName", "${AdminLogGroup}"',
        '{"Ref": "AdminLogGroup"}',
    ),
    "another API": ('"ApiName", "${AWS::StackName}"', '"ApiName", "Mailroom"', '"ApiName": "Mailroom"'),
    "an SES metric AWS does not publish": (
        '"Reputation.BounceRate"',
        '"Reputation.BounceRates"',
        "AWS/SES Reputation.BounceRates",
    ),
    "another region": ('"region": "${AWS::Region}"', '"region": "us-east-1"', "region is not the stack's"),
    "an alarm left out": ('"${SesBounceRateAlarm.Arn}",', "", "SesBounceRateAlarm missing"),
    "a variable naming nothing": ("${WelcomeQueue.QueueName}", "${WelcomeQueues.QueueName}", "WelcomeQueues"),
    "a shorthand row": (
        '["AWS/SES", "Delivery", {"label": "Delivery"}]',
        '[".", "Delivery", {"label": "Delivery"}]',
        "write every row out",
    ),
}


@pytest.mark.parametrize("breakage", list(DASHBOARD_BREAKAGES))
def test_the_dashboard_check_finds_a_metric_nobody_emits(raw: Template, code: Code, breakage: str) -> None:
    old, new, named = DASHBOARD_BREAKAGES[breakage]
    properties = raw["Resources"][DASHBOARD]["Properties"]
    assert old in properties["DashboardBody"]["Fn::Sub"], breakage
    properties["DashboardBody"] = {"Fn::Sub": properties["DashboardBody"]["Fn::Sub"].replace(old, new, 1)}
    problems = dashboard_problems(raw, code)
    assert problems, breakage
    assert all(named in problem for problem in problems), problems


def _key(namespace: str, name: str, stat: str, **dimensions: Any) -> str:
    return json.dumps([namespace, name, stat, dimensions], sort_keys=True)


def missing_from_dashboard(raw: Template) -> list[str]:
    """What the dashboard must show (issue #8) and does not."""
    shown = {
        _key(item.metric.namespace, item.metric.name, item.stat, **item.metric.dimensions)
        for item in dashboard_metrics(raw)[0]
    }
    wanted = []
    for task_type, service in TASK_TYPES.items():
        task = {"service": service, "task_type": task_type}
        wanted += [_key("Mailroom", "TasksProcessed", "Sum", **task), _key("Mailroom", "TaskErrors", "Sum", **task)]
        wanted += [_key("Mailroom", "ProcessingTime", p, **task) for p in ("p50", "p95", "p99")]
        if task_type in MAIL_TASK_TYPES:
            names = ("MailsSent", "MailsFailed", "MailsThrottled", "MailsRetried")
            wanted += [_key("Mailroom", name, "Sum", **task) for name in names]
    for function in resources(raw, "AWS::Serverless::Function"):
        wanted.append(_key("AWS/Lambda", "Errors", "Sum", FunctionName={"Ref": function}))
    for queue in _consumed_queues(raw):
        name = {"QueueName": {"Fn::GetAtt": [queue, "QueueName"]}}
        wanted.append(_key("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", **name))
        wanted.append(_key("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", **name))
    for queue in _dead_letter_queues(raw):
        wanted.append(
            _key(
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                "Maximum",
                QueueName={"Fn::GetAtt": [queue, "QueueName"]},
            )
        )
    wanted += [_key("AWS/SES", name, "Sum") for name in ("Send", "Bounce", "Complaint")]
    wanted += [_key("AWS/SES", name, "Maximum") for name in ("Reputation.BounceRate", "Reputation.ComplaintRate")]
    wanted.append(_key("Mailroom", "ColdStart", "search", function_name=ANY, service=ANY))
    return [key for key in wanted if key not in shown]


def test_the_dashboard_shows_throughput_latency_errors_queues_ses_and_cold_starts(stack: Stack, raw: Template) -> None:
    assert missing_from_dashboard(stack.template) == []
    properties = raw["Resources"][DASHBOARD]["Properties"]
    body = properties["DashboardBody"]["Fn::Sub"]
    # broken: the last dead-letter queue left out
    row = r',\s*\["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", '
    row += r'"\$\{SesEventsDeadLetterQueue\.QueueName\}"[^]]*\]'
    assert len(re.findall(row, body)) == 1
    properties["DashboardBody"] = {"Fn::Sub": re.sub(row, "", body)}
    assert [json.loads(key)[3] for key in missing_from_dashboard(raw)] == [
        {"QueueName": {"Fn::GetAtt": ["SesEventsDeadLetterQueue", "QueueName"]}}
    ]
    # and the alarms, each of them (dashboard_problems), and a link to it
    assert any(widget["type"] == "alarm" for widget in dashboard_body(stack.template)["widgets"])
    url = stack.template["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    assert url.startswith("https://console.aws.amazon.com/cloudwatch/home?region=${AWS::Region}#dashboards/")
    assert url.endswith("/${MailroomDashboard}")


# ------------------------------------------------------------------ the alarms: who hears them
def _get_att(value: Any, attribute: str) -> str:
    """The resource of ``!GetAtt <resource>.<attribute>``."""
    assert isinstance(value, dict) and list(value) == ["Fn::GetAtt"], value
    resource, got = value["Fn::GetAtt"]
    assert got == attribute, value
    return str(resource)


def notification_problems(raw: Template) -> list[str]:
    """Alarms that do not notify the topic on ALARM and on OK, count missing data as breaching,
    explain nothing, or have a fixed name."""
    problems = []
    for logical_id, alarm in alarms(raw).items():
        if TOPIC not in alarm.get("AlarmActions", []) or TOPIC not in alarm.get("OKActions", []):
            problems.append(f"{logical_id}: does not notify AlarmTopic on ALARM and on OK")
        if alarm.get("TreatMissingData") != "notBreaching":
            problems.append(f"{logical_id}: missing data is not OK")
        if len(alarm.get("AlarmDescription", "")) <= 40:
            problems.append(f"{logical_id}: no description of what it means and what to do")
        if "AlarmName" in alarm:
            problems.append(f"{logical_id}: a fixed name (a generated one lets stages share an account)")
    return problems


def test_every_alarm_notifies_the_alarm_topic_on_alarm_and_back_to_ok(stack: Stack, raw: Template) -> None:
    resources_ = stack.template["Resources"]
    assert resources_["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    assert len(alarms(stack.template)) >= 20
    assert notification_problems(stack.template) == []
    (statement,) = [
        s
        for s in resources_["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow" and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert statement["Action"] == "sns:Publish" and statement["Resource"] == TOPIC
    assert resources_["AlarmTopicPolicy"]["Properties"]["Topics"] == [TOPIC]
    subscription = resources_["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {"TopicArn": TOPIC, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}
    assert stack.template["Outputs"]["AlarmTopicArn"]["Value"] == TOPIC
    # broken: one alarm silent when it recovers, one paging on missing data, one named
    del _properties(raw, "SesComplaintRateAlarm")["OKActions"]
    _properties(raw, "ApiErrorRateAlarm")["TreatMissingData"] = "breaching"
    _properties(raw, "RateLimitErrorsAlarm")["AlarmName"] = "rate-limit-errors"
    assert [problem.split(":")[0] for problem in notification_problems(raw)] == [
        "RateLimitErrorsAlarm",
        "ApiErrorRateAlarm",
        "SesComplaintRateAlarm",
    ]


def test_no_subscription_without_an_alarm_email() -> None:
    assert not Stack.load(TEMPLATE).is_created("AlarmEmailSubscription")
    assert Stack.load(TEMPLATE, overrides={"AlarmEmail": "ops@example.com"}).is_created("AlarmEmailSubscription")


def test_the_alarm_topic_is_not_encrypted_with_the_aws_managed_key(stack: Stack) -> None:
    # CloudWatch cannot publish to a topic encrypted with alias/aws/sns: the alarms would be silent.
    properties = stack.template["Resources"]["AlarmTopic"].get("Properties") or {}
    assert properties.get("KmsMasterKeyId") != "alias/aws/sns"


# ------------------------------------------------------------------ the alarms: what they watch
def _watched(raw: Template, namespace: str, metric: str, dimension: str) -> dict[str, dict[str, Any]]:
    """The alarms on ``namespace/metric`` (one metric, no math) by the resource their one dimension names."""
    watched: dict[str, dict[str, Any]] = {}
    for logical_id, alarm in alarms(raw).items():
        if (alarm.get("Namespace"), alarm.get("MetricName")) != (namespace, metric):
            continue
        (only,) = alarm["Dimensions"]
        assert only["Name"] == dimension, logical_id
        value = only["Value"]
        resource = _get_att(value, "QueueName") if dimension == "QueueName" else value["Ref"]
        assert resource not in watched, f"{resource} has two {metric} alarms"
        watched[resource] = alarm
    return watched


def _dead_letter_queues(raw: Template) -> set[str]:
    """Every queue that holds what failed: redrive targets, on-failure destinations and the
    schedules' dead-letter queues (SAM creates those: QueueLogicalId, else <Function><Event>Queue)."""
    found: set[str] = set()
    for logical_id, resource in raw["Resources"].items():
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


def _consumed_queues(raw: Template) -> set[str]:
    """The queues a function consumes (its SQS events)."""
    return {
        _get_att(event["Properties"]["Queue"], "Arn")
        for resource in resources(raw, "AWS::Serverless::Function").values()
        for event in (resource["Properties"].get("Events") or {}).values()
        if event["Type"] == "SQS"
    }


def test_every_dead_letter_queue_has_a_depth_alarm(stack: Stack) -> None:
    dead_letter_queues = _dead_letter_queues(stack.template)
    assert dead_letter_queues == {
        "WelcomeDeadLetterQueue",
        "NewsletterDeadLetterQueue",
        "FanoutDeadLetterQueue",
        "DispatcherFailureQueue",
        "NewsletterDispatcherFunctionDailyNewsletterQueue",
        "NewsletterDispatcherFunctionRecoveryQueue",
        "SesEventsDeadLetterQueue",
    }
    watched = _watched(stack.template, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName")
    assert set(watched) == dead_letter_queues
    for queue, alarm in watched.items():
        settings = {key: alarm[key] for key in ("Statistic", "Period", "EvaluationPeriods", "Threshold")}
        assert settings == {"Statistic": "Maximum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 0}, queue
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold", queue


def test_every_queue_a_function_consumes_has_an_age_alarm(stack: Stack) -> None:
    consumed = _consumed_queues(stack.template)
    assert consumed == {"WelcomeQueue", "NewsletterQueue", "FanoutQueue", "SesEventsQueue"}
    watched = _watched(stack.template, "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName")
    assert set(watched) == consumed
    for queue, alarm in watched.items():
        assert alarm["Threshold"] == {"Ref": "OldestMessageAgeAlarmSeconds"}, queue
        assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Maximum", 300, 2), queue
    assert stack.parameters["OldestMessageAgeAlarmSeconds"] == "3600"


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_worker_function_has_an_errors_and_a_throttles_alarm(stack: Stack, metric: str) -> None:
    workers = {
        logical_id
        for logical_id, resource in resources(stack.template, "AWS::Serverless::Function").items()
        if any(
            event["Type"] in ("SQS", "ScheduleV2", "Schedule")
            for event in (resource["Properties"].get("Events") or {}).values()
        )
    }
    assert workers == {
        "WelcomeWorkerFunction",
        "NewsletterWorkerFunction",
        "FanoutFunction",
        "NewsletterDispatcherFunction",
        "SesEventsFunction",
    }
    watched = _watched(stack.template, "AWS/Lambda", metric, "FunctionName")
    assert set(watched) == workers
    for function, alarm in watched.items():
        assert (alarm["Statistic"], alarm["Period"], alarm["Threshold"]) == ("Sum", 300, 0), function
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold", function


# ------------------------------------------------------------------ when they fire
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
ARITHMETIC: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
RELATIONS: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Eq: operator.eq,
}


def _evaluate(node: ast.expr, value_of: Callable[[str], float | None]) -> float | None:
    """One data point of a metric math expression (None: no data point), as CloudWatch
    computes it: IF(condition, then, else), FILL(metric, value), + - * /, comparisons (1 or 0)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.Name):
        return value_of(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("IF", "FILL"):
        first = _evaluate(node.args[0], value_of)
        if node.func.id == "FILL":
            return _evaluate(node.args[1], value_of) if first is None else first
        if first is None:
            return None
        return _evaluate(node.args[1] if first else node.args[2], value_of)
    if isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
        left, right = _evaluate(node.left, value_of), _evaluate(node.right, value_of)
        if left is None or right is None or (isinstance(node.op, ast.Div) and right == 0):
            return None
        return ARITHMETIC[type(node.op)](left, right)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in RELATIONS:
        left, right = _evaluate(node.left, value_of), _evaluate(node.comparators[0], value_of)
        return None if left is None or right is None else float(RELATIONS[type(node.ops[0])](left, right))
    raise AssertionError(f"metric math this test does not evaluate: {ast.unparse(node)}")


def breaches(alarm: dict[str, Any], sums: dict[str, float | None]) -> bool:
    """Whether one period in which each metric (by name) had ``sums[name]`` breaches the alarm
    (a metric not named: no data point; no data is OK, as TreatMissingData says)."""
    if "MetricName" in alarm:
        value = sums.get(alarm["MetricName"])
    else:
        queries = {query["Id"]: query for query in alarm["Metrics"]}

        def value_of(query_id: str) -> float | None:
            query = queries[query_id]
            if "MetricStat" in query:
                return sums.get(query["MetricStat"]["Metric"]["MetricName"])
            return _evaluate(ast.parse(query["Expression"], mode="eval").body, value_of)

        (result,) = [query["Id"] for query in alarm["Metrics"] if query.get("ReturnData", True)]
        value = value_of(result)
    return value is not None and COMPARISONS[alarm["ComparisonOperator"]](value, float(alarm["Threshold"]))


def _alarms_on(raw: Template, name: str, **dimensions: str) -> list[str]:
    """The alarms watching metric ``name`` with these dimension values (among others)."""
    found, _ = alarm_metrics(raw)
    return sorted(
        {m.where for m in found if m.name == name and all(m.dimensions.get(k) == v for k, v in dimensions.items())}
    )


@pytest.mark.parametrize("task_type", MAIL_TASK_TYPES)
def test_each_mail_task_type_has_a_send_error_rate_alarm_with_a_volume_guard(stack: Stack, task_type: str) -> None:
    (logical_id,) = _alarms_on(stack.template, "MailsFailed", task_type=task_type)
    assert _alarms_on(stack.template, "MailsSent", task_type=task_type) == [logical_id]
    alarm = alarms(stack.template)[logical_id]
    assert not breaches(alarm, {"MailsSent": 1, "MailsFailed": 1}), "one failure of two mails does not page"
    assert not breaches(alarm, {"MailsFailed": 3}), "nor three failures alone"
    assert not breaches(alarm, {"MailsSent": 990, "MailsFailed": 10}), "1%"
    assert not breaches(alarm, {"MailsSent": 500}), "no failure"
    assert not breaches(alarm, {}), "no mail"
    assert breaches(alarm, {"MailsSent": 18, "MailsFailed": 2}), "10% of 20"
    assert breaches(alarm, {"MailsFailed": 25}), "every mail failed (no MailsSent at all)"
    assert (alarm["Threshold"], alarm["EvaluationPeriods"]) == (0.05, 1)
    # without FILL an alarm would stay silent when every mail fails
    unfilled = copy.deepcopy(alarm)
    unfilled["Metrics"][-1]["Expression"] = "IF(sent + failed >= 20, failed / (sent + failed), 0)"
    assert not breaches(unfilled, {"MailsFailed": 25})


def test_the_api_error_rate_alarm_counts_5xx_answers_from_ten_requests_on(stack: Stack) -> None:
    (logical_id,) = _alarms_on(stack.template, "5XXError")
    assert _alarms_on(stack.template, "Count") == [logical_id] == ["ApiErrorRateAlarm"]
    alarm = alarms(stack.template)[logical_id]
    assert not breaches(alarm, {"Count": 2, "5XXError": 1}), "one failure of two requests does not page"
    assert not breaches(alarm, {"Count": 100, "5XXError": 3})
    assert not breaches(alarm, {"Count": 100})
    assert breaches(alarm, {"Count": 100, "5XXError": 10})
    assert breaches(alarm, {"Count": 10, "5XXError": 10})


def test_a_failing_rate_limit_table_pages_at_once(stack: Stack) -> None:
    (logical_id,) = _alarms_on(stack.template, "RateLimitErrors", service="registration")
    alarm = alarms(stack.template)[logical_id]
    assert breaches(alarm, {"RateLimitErrors": 1})
    assert not breaches(alarm, {})
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)


@pytest.mark.parametrize(
    ("metric", "threshold"), [("Reputation.BounceRate", 0.05), ("Reputation.ComplaintRate", 0.001)]
)
def test_ses_bounce_and_complaint_rate_alarms_fire_at_5_and_0_1_percent(
    stack: Stack, metric: str, threshold: float
) -> None:
    # the rates SES reviews an account on: at 5% bounces or 0.1% complaints it is under review
    (logical_id,) = _alarms_on(stack.template, metric)
    alarm = alarms(stack.template)[logical_id]
    assert (alarm["Namespace"], "Dimensions" in alarm) == ("AWS/SES", False)
    assert alarm["Threshold"] == threshold
    assert breaches(alarm, {metric: threshold})
    assert not breaches(alarm, {metric: threshold * 0.9})


def test_the_throttling_alarm_watches_the_newsletter_workers_sustained_ses_throttles(stack: Stack) -> None:
    alarm = alarms(stack.template)["NewsletterMailsThrottledAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("Mailroom", "MailsThrottled")
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
        "service": "newsletter-worker",
        "task_type": "newsletter",
    }
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"], alarm["Threshold"]) == ("Sum", 300, 3, 100)
