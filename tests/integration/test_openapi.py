"""docs/openapi.yaml against the code: the same routes, bodies, parameters and enums.

* the document is valid OpenAPI 3.0 (openapi-spec-validator);
* its operations are exactly template.yaml's ``Api`` events, and exactly the routes the
  handlers' Powertools resolvers registered; an operation needs the ``cognitoIdToken``
  scheme exactly when the template puts an authorizer on its route;
* each JSON request body is the pydantic model the handler validates with (found in the
  handler's source): the same fields, required fields, types, enums, defaults and every
  limit pydantic declares; limits the document states beyond those (enforced by
  validators) are listed here with a value the model must refuse;
* each integer query parameter has the handler's ``query_int`` bounds and default;
* the enums and the response objects of subscribers and campaigns are the models'.

Needs no runtime: the handlers are loaded against moto like the unit tests do.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate as validate_openapi
from pydantic import BaseModel, ValidationError

from mailroom import models
from mailroom.adapters.deadletters import DeadLetterOffice
from mailroom_local.template import Stack
from tests.conftest import FUNCTION_DIRS
from tests.support import ROOT, TEMPLATE

SPEC = ROOT / "docs" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
API_FUNCTIONS = ("RegistrationFunction", "AuthFunction", "AdminFunction")
# The calls through which a handler validates its body against a model.
BODY_PARSERS = {"parse_json_body", "_body", "_optional_body"}

Operation = tuple[str, str]  # (METHOD, /path/{}) - path parameters' names dropped


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return loaded


def _normal(path: str) -> str:
    """A path with its parameters unnamed: /a/{id} (template, document) = /a/<campaign_id> (Powertools)."""
    return re.sub(r"\{[^}]+\}|<[^>]+>", "{}", path)


def _operations(doc: dict[str, Any]) -> dict[Operation, dict[str, Any]]:
    return {
        (method.upper(), _normal(path)): operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its $ref followed and a single-element allOf merged in."""
    while "$ref" in schema:
        target: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    if len(schema.get("allOf", [])) == 1:
        inner = _resolve(doc, schema["allOf"][0])
        schema = {**inner, **{k: v for k, v in schema.items() if k != "allOf"}}
    return schema


# ------------------------------------------------------------------------------ validity


def test_the_document_is_valid_openapi_3_0(doc: dict[str, Any]) -> None:
    validate_openapi(doc)
    assert doc["openapi"].startswith("3.0.")


def test_every_operation_has_an_id_a_summary_and_documents_its_errors(doc: dict[str, Any]) -> None:
    ids = [operation["operationId"] for operation in _operations(doc).values()]
    assert len(ids) == len(set(ids))
    for key, operation in _operations(doc).items():
        assert operation.get("summary"), key
        statuses = set(operation["responses"])
        assert any(status.startswith("2") for status in statuses), key
        assert {"429", "502", "503"} <= statuses, key  # throttling, and the last resorts
        if "requestBody" in operation:
            assert "413" in statuses, key
            if set(operation["requestBody"]["content"]) & {"application/json", "text/csv"}:
                assert {"400", "415"} <= statuses, key


# ------------------------------------------------------------------------------ routes


def test_the_operations_are_the_templates_api_events(doc: dict[str, Any]) -> None:
    routes = Stack.load(TEMPLATE).routes
    template = {(route.method.upper(), _normal(route.path)) for route in routes}
    assert set(_operations(doc)) == template
    # and the document spells the paths as the template does (parameter names included)
    assert {path for path in doc["paths"]} == {route.path for route in routes}


def test_exactly_the_routes_behind_the_authorizer_need_the_admin_token(doc: dict[str, Any]) -> None:
    routes = {(route.method.upper(), _normal(route.path)): route for route in Stack.load(TEMPLATE).routes}
    for key, operation in _operations(doc).items():
        needs_token = operation.get("security") == [{"cognitoIdToken": []}]
        assert needs_token == (routes[key].authorizer is not None), key
        if needs_token:
            assert {"401", "403"} <= set(operation["responses"]), key
    scheme = doc["components"]["securitySchemes"]["cognitoIdToken"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")


@pytest.fixture
def handlers(load_function: Callable[..., ModuleType]) -> dict[str, ModuleType]:
    """The API functions' modules, loaded against moto with their template environment."""
    return {logical_id: load_function(logical_id) for logical_id in API_FUNCTIONS}


def _resolver_routes(module: ModuleType) -> set[Operation]:
    app = module.app
    return {(route.method.upper(), _normal(route.path)) for route in app._static_routes + app._dynamic_routes}


def test_the_operations_are_the_handlers_routes(doc: dict[str, Any], handlers: dict[str, ModuleType]) -> None:
    by_function: dict[str, set[Operation]] = {}
    for route in Stack.load(TEMPLATE).routes:
        by_function.setdefault(route.function, set()).add((route.method.upper(), _normal(route.path)))
    for logical_id, module in handlers.items():
        assert _resolver_routes(module) == by_function[logical_id], logical_id
    assert set().union(*(_resolver_routes(module) for module in handlers.values())) == set(_operations(doc))


# ------------------------------------------------------------------------------ request bodies


def _decorated_routes(source: str) -> Iterator[tuple[Operation, ast.FunctionDef]]:
    """(operation, function) of each ``@app.<method>("<path>")`` in a handler's source."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and isinstance(decorator.func.value, ast.Name)
                and decorator.func.value.id == "app"
                and decorator.func.attr in METHODS
            ):
                path = ast.literal_eval(decorator.args[0])
                yield (decorator.func.attr.upper(), _normal(path)), node


def _calls(function: ast.FunctionDef, names: set[str]) -> Iterator[ast.Call]:
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
            yield node


def _body_models(handlers: dict[str, ModuleType]) -> dict[Operation, type[BaseModel]]:
    """The model each route validates its JSON body with (from the handler's source)."""
    found: dict[Operation, type[BaseModel]] = {}
    for logical_id, module in handlers.items():
        source = (ROOT / "functions" / FUNCTION_DIRS[logical_id] / "app.py").read_text(encoding="utf-8")
        for operation, function in _decorated_routes(source):
            for call in _calls(function, BODY_PARSERS):
                argument = call.args[-1] if call.func.id != "parse_json_body" else call.args[1]  # type: ignore[attr-defined]
                assert isinstance(argument, ast.Name), ast.dump(call)
                found[operation] = getattr(module, argument.id)
    return found


def _pydantic_field(schema: dict[str, Any], definitions: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A field's JSON schema (refs resolved, ``X | None`` unwrapped) and whether null is allowed."""
    options = schema.get("anyOf")
    nullable = False
    if options:
        rest = [option for option in options if option.get("type") != "null"]
        nullable = len(rest) < len(options)
        assert len(rest) == 1, schema
        schema = {**rest[0], **{k: v for k, v in schema.items() if k != "anyOf"}}
    if "$ref" in schema:
        schema = {**definitions[schema["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema, nullable


# What the document says about a field beyond what pydantic's schema states (limits that
# validators enforce): (model, field) -> {keyword: (value, a value the model refuses for it)};
# None: documentation only (a password's format tells clients to mask it).
LONG_ADDRESS = "a" * (models.MAX_EMAIL_LENGTH + 1 - len("@example.com")) + "@example.com"
EMAIL = {"maxLength": (models.MAX_EMAIL_LENGTH, LONG_ADDRESS), "format": ("email", "not an address")}
SUBJECT = {"minLength": (1, "   ")}
CONTENT = {"minLength": (1, " \n "), "maxLength": (models.MAX_CONTENT_BYTES, "é" * (models.MAX_CONTENT_BYTES // 2 + 1))}
BEYOND_PYDANTIC: dict[tuple[str, str], dict[str, tuple[Any, Any]]] = {
    ("Registration", "email"): EMAIL,
    ("PreviewRequest", "email"): EMAIL,
    ("DraftPreviewRequest", "email"): EMAIL,
    ("TestSendRequest", "email"): EMAIL,
    ("CampaignCreate", "subject"): SUBJECT,
    ("CampaignUpdate", "subject"): SUBJECT,
    ("DraftPreviewRequest", "subject"): SUBJECT,
    ("CampaignCreate", "content"): CONTENT,
    ("CampaignUpdate", "content"): CONTENT,
    ("DraftPreviewRequest", "content"): CONTENT,
    ("SignIn", "password"): {"format": ("password", None)},
    ("NewPassword", "new_password"): {"format": ("password", None)},
}
# A valid body of each model of mailroom.models with such limits.
VALID: dict[str, dict[str, Any]] = {
    "Registration": {"email": "ada@example.com"},
    "PreviewRequest": {},
    "DraftPreviewRequest": {"subject": "Hi", "content": "Hello"},
    "TestSendRequest": {"email": "ada@example.com"},
    "CampaignCreate": {"subject": "Hi", "content": "Hello"},
    "CampaignUpdate": {},
}


def _compare(doc: dict[str, Any], documented: dict[str, Any], model: type[BaseModel]) -> None:
    name = model.__name__
    reference = model.model_json_schema()
    definitions = reference.get("$defs", {})
    assert documented.get("type") == "object", name
    assert set(documented["properties"]) == set(reference["properties"]), name
    assert set(documented.get("required", [])) == set(reference.get("required", [])), name
    forbids_extra = model.model_config.get("extra") == "forbid"
    assert (documented.get("additionalProperties") is False) == forbids_extra, name
    for field, raw in reference["properties"].items():
        expected, nullable = _pydantic_field(raw, definitions)
        actual = _resolve(doc, documented["properties"][field])
        where = f"{name}.{field}"
        assert bool(actual.get("nullable")) == nullable, where
        assert actual.get("type") == expected.get("type"), where
        if "enum" in expected:
            assert set(actual["enum"]) == set(expected["enum"]), where
        if expected.get("default") is not None:
            assert actual.get("default") == expected["default"], where
        beyond = BEYOND_PYDANTIC.get((name, field), {})
        for keyword in ("minLength", "maxLength", "minimum", "maximum", "pattern", "format"):
            assert not (keyword in expected and keyword in beyond), (where, keyword)  # one source of truth
            wanted = expected[keyword] if keyword in expected else beyond.get(keyword, (None,))[0]
            assert actual.get(keyword) == wanted, (where, keyword, actual.get(keyword), wanted)


def test_each_request_body_is_the_model_the_handler_validates(
    doc: dict[str, Any], handlers: dict[str, ModuleType]
) -> None:
    models_by_operation = _body_models(handlers)
    operations = _operations(doc)
    with_json_body = {
        key
        for key, operation in operations.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    }
    assert set(models_by_operation) == with_json_body
    for key, model in models_by_operation.items():
        documented = _resolve(doc, operations[key]["requestBody"]["content"]["application/json"]["schema"])
        _compare(doc, documented, model)


@pytest.mark.parametrize(("model_name", "field"), sorted(k for k in BEYOND_PYDANTIC if k[0] in VALID))
def test_each_limit_beyond_pydantics_schema_is_enforced(model_name: str, field: str) -> None:
    model: type[BaseModel] = getattr(models, model_name)
    model.model_validate(VALID[model_name])
    for keyword, (_, refused) in BEYOND_PYDANTIC[(model_name, field)].items():
        with pytest.raises(ValidationError) as error:
            model.model_validate({**VALID[model_name], field: refused})
        assert error.value.errors()[0]["loc"] == (field,), (model_name, field, keyword)


def test_optional_bodies_are_the_routes_that_read_an_absent_body_as_an_empty_object(
    doc: dict[str, Any], handlers: dict[str, ModuleType]
) -> None:
    source = (ROOT / "functions" / "admin" / "app.py").read_text(encoding="utf-8")
    optional = {
        operation
        for operation, function in _decorated_routes(source)
        if any(True for _ in _calls(function, {"_optional_body"}))
    }
    documented = {
        key
        for key, operation in _operations(doc).items()
        if "requestBody" in operation
        and not operation["requestBody"].get("required", False)
        and "application/json" in operation["requestBody"]["content"]
    }
    assert optional == documented


# ------------------------------------------------------------------------------ parameters


def test_integer_query_parameters_have_the_handlers_bounds_and_defaults(doc: dict[str, Any]) -> None:
    operations = _operations(doc)
    source = (ROOT / "functions" / "admin" / "app.py").read_text(encoding="utf-8")
    checked = 0
    for key, function in _decorated_routes(source):
        parameters = {
            parameter["name"]: _resolve(doc, parameter["schema"])
            for parameter in (_resolve(doc, p) for p in operations[key].get("parameters", []))
        }
        for call in _calls(function, {"query_int"}):
            name, default, low, high = (ast.literal_eval(argument) for argument in call.args[1:5])
            assert parameters[name] == {"type": "integer", "minimum": low, "maximum": high, "default": default}, key
            checked += 1
    documented = sum(
        1
        for operation in operations.values()
        for parameter in (_resolve(doc, p) for p in operation.get("parameters", []))
        if parameter["in"] == "query" and _resolve(doc, parameter["schema"]).get("type") == "integer"
    )
    assert checked == documented > 0


def test_the_search_text_has_the_handlers_limit(doc: dict[str, Any], handlers: dict[str, ModuleType]) -> None:
    parameters = doc["paths"]["/admin/subscribers"]["get"]["parameters"]
    q = next(parameter for parameter in parameters if parameter.get("name") == "q")
    assert q["schema"]["maxLength"] == handlers["AdminFunction"].MAX_QUERY_LENGTH


def test_a_subscriber_id_has_the_handlers_pattern(doc: dict[str, Any], handlers: dict[str, ModuleType]) -> None:
    pattern = doc["components"]["parameters"]["SubscriberId"]["schema"]["pattern"]
    assert pattern == f"^{handlers['AdminFunction'].SUBSCRIBER_ID.pattern}$"


# ------------------------------------------------------------------------------ enums and answers


@pytest.mark.parametrize(
    ("schema", "values"),
    [
        ("SubscriberStatus", [status.value for status in models.SubscriberStatus]),
        ("CampaignStatus", [status.value for status in models.CampaignStatus]),
        ("DeliveryStatus", [status.value for status in models.DeliveryStatus]),
        ("ContentFormat", [fmt.value for fmt in models.ContentFormat]),
        ("DeadLetterQueueName", ["welcome", "newsletter", "fanout"]),
    ],
)
def test_the_enums_are_the_models(doc: dict[str, Any], schema: str, values: list[str]) -> None:
    assert doc["components"]["schemas"][schema]["enum"] == values


def test_the_dead_letter_queues_are_the_admin_functions(doc: dict[str, Any], handlers: dict[str, ModuleType]) -> None:
    office: DeadLetterOffice = handlers["AdminFunction"].dead_letters
    assert doc["components"]["schemas"]["DeadLetterQueueName"]["enum"] == list(office.queues)


def test_a_subscriber_and_a_campaign_are_answered_as_documented(doc: dict[str, Any]) -> None:
    subscriber = models.Subscriber(id="s", email="a@example.com", created_at="2026-01-01T00:00:00.000Z")
    campaign = models.Campaign(
        id="c",
        subject="s",
        content="c",
        format=models.ContentFormat.MARKDOWN,
        status=models.CampaignStatus.DRAFT,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
    )
    schemas = doc["components"]["schemas"]
    assert (
        set(subscriber.public()) == set(schemas["Subscriber"]["properties"]) == set(schemas["Subscriber"]["required"])
    )
    answer = campaign.public()
    assert set(answer) == set(schemas["Campaign"]["properties"]) == set(schemas["Campaign"]["required"])
    assert set(answer["counters"]) == set(schemas["Counters"]["properties"])  # type: ignore[arg-type]
    assert set(answer["feedback"]) == set(schemas["Feedback"]["properties"])  # type: ignore[arg-type]


def test_the_error_body_is_api_errors(doc: dict[str, Any]) -> None:
    from mailroom.api import ApiError

    body = ApiError(400, "invalid_field", "name: bad", field="name", details=[{"field": "name", "message": "bad"}])
    error = doc["components"]["schemas"]["Error"]
    assert set(body.body()) == set(error["properties"])
    assert set(body.body()["error"]) == set(error["properties"]["error"]["properties"])
