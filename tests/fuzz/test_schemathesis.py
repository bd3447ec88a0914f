"""schemathesis against the embedded runtime: generated requests to every operation of
docs/openapi.yaml, valid and invalid, and every answer checked against the document.

The runtime is the one the integration tests start (template.yaml on moto, each function
in its own sandbox, the local Cognito authorizer), reached over HTTP. For each operation
schemathesis runs its phases - the document's examples, the coverage cases around every
constraint (and the path with methods it does not have), then Hypothesis fuzzing in
positive and negative mode - and every answer must be

* no server error: no 5xx at all (neither a handler's 503 nor API Gateway's 502);
* a status the operation documents, with the documented content type, headers and body;
* for invalid input (negative mode), a 4xx: the API never accepts what the document
  says is invalid.

A stateful run first chains operations along the document's links (a created campaign's
id into edit, preview, test, cancel, recipients), so those routes also see ids that
exist. Admin routes get an admin's ID token (``admin_headers``); a few generated admin
requests go without one and must get API Gateway's 401. Hypothesis is derandomized (the
same cases on every run: CI cannot flake) and keeps no example database. The requests
are counted: at least MIN_REQUESTS, and the last test prints how many, to which
operations, with which statuses and in how long (also recorded as the test's
``schemathesis`` property).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mailroom_local import Runtime
from tests.support import ROOT

try:  # an admin's Authorization header (the Cognito authorizer of issue #7)
    from tests.integration.conftest import admin_headers
except ImportError:  # pragma: no cover - before it, the admin routes took any request
    admin_headers = None  # type: ignore[assignment]

SPEC = ROOT / "docs" / "openapi.yaml"
MIN_REQUESTS = 1_000
# Hypothesis examples per operation in the fuzzing phase; the examples and coverage phases
# add their own cases (every constraint's edges, each parameter missing, other methods).
EXAMPLES = 40
UNAUTHENTICATED_EXAMPLES = 4
SEED = 7
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=list(hypothesis.HealthCheck),
)

SENT: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()
STARTED = time.monotonic()


def _schema(*, coverage: bool) -> schemathesis.BaseSchema:
    """docs/openapi.yaml; the base URL (the runtime's, known once it runs) is given per call."""
    # Invalid input may also be refused as too large (413): the default list lacks it.
    rejections = {"expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]}
    # The stateful run follows only the document's links (from a created campaign to its
    # other operations), not the ones schemathesis would infer, e.g. from a listing to any
    # campaign or subscriber: see test_chained_operations_answer_as_documented.
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "checks": {"negative_data_rejection": rejections},
            "phases": {"stateful": {"inference": {"algorithms": []}}},
        }
    )
    schema = schemathesis.openapi.from_path(SPEC, config=config)
    # The admin token is added to each call, not generated: schemathesis would otherwise
    # send admin requests without it too (test_admin_routes_refuse_... covers those).
    schema.config.generation.update(
        deterministic=True, database="none", max_examples=EXAMPLES, with_security_parameters=False
    )
    schema.config.update(request_timeout=30)
    # Other methods on each path must be refused (API Gateway's 403), TRACE included.
    schema.config.phases.coverage.unexpected_methods = {"get", "put", "post", "delete", "options", "patch", "trace"}
    schema.config.phases.coverage.enabled = coverage
    schema.config.phases.examples.enabled = coverage
    return schema


SCHEMA = _schema(coverage=True)
ADMIN_SCHEMA = _schema(coverage=False).include(path_regex="^/admin")
STATEFUL_SCENARIOS = 30
STATEFUL_STEPS = 8

# (method, path pattern) of every documented operation: the template's API routes.
ROUTES = [
    (method.upper(), re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))))
    for path, item in SCHEMA.raw_schema["paths"].items()
    for method in item
    if method != "parameters"
]


def _is_a_route(method: str, path: str) -> bool:
    return any(method.upper() == known and pattern.fullmatch(path) for known, pattern in ROUTES)


@pytest.fixture(scope="module")
def admin(runtime: Runtime) -> dict[str, str]:
    """The Authorization header of the local first admin."""
    return dict(admin_headers(runtime)) if admin_headers is not None else {}


def _count(case: schemathesis.Case, response: schemathesis.Response) -> None:
    SENT[f"{case.operation.method.upper()} {case.operation.path}"] += 1
    STATUSES[response.status_code] += 1


def _send(case: schemathesis.Case, runtime: Runtime, headers: dict[str, str]) -> schemathesis.Response:
    response = case.call(base_url=runtime.api_url, headers=headers)
    _count(case, response)
    return response


def _headers_for(case: schemathesis.Case, admin: dict[str, str]) -> dict[str, str]:
    return admin if case.path.startswith("/admin") else {}


def test_chained_operations_answer_as_documented(runtime: Runtime, admin: dict[str, str]) -> None:
    """Chains along the document's links: a campaign is created, then edited, previewed,
    test-sent, cancelled, its recipients listed. Which step may follow depends on earlier
    answers, so each chain starts from a campaign of its own and "send now" is not linked:
    an answer that depended on another chain (a subscriber it erased) or on background work
    (a fan-out moving a campaign from sending to sent: a cancel's 200 or 409) would change
    Hypothesis' generation between replays, and CI would flake."""

    class Workflow(SCHEMA.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"base_url": runtime.api_url, "headers": _headers_for(case, admin)}

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            _count(case, response)

        def validate_response(
            self,
            response: schemathesis.Response,
            case: schemathesis.Case,
            additional_checks: object = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Workflow.run(
        settings=hypothesis.settings(SETTINGS, max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS)
    )


@SCHEMA.parametrize()
@SETTINGS
def test_every_answer_matches_the_document(case: schemathesis.Case, runtime: Runtime, admin: dict[str, str]) -> None:
    headers = _headers_for(case, admin)
    response = _send(case, runtime, headers)
    case.validate_response(response, checks=CHECKS, headers=headers)


def test_a_new_password_for_an_unknown_session_is_a_401(runtime: Runtime) -> None:
    """An unknown or expired session is Cognito's NotAuthorizedException: the same 401 as a
    wrong password (the fuzzing rarely makes a session long enough to reach Cognito)."""
    [operation] = list(SCHEMA.include(path="/auth/new-password").get_all_operations())
    case = operation.ok().Case(
        body={"email": "ada@example.com", "session": "s" * 40, "new_password": "Correct-Horse-9-Battery"},
        media_type="application/json",
    )
    response = _send(case, runtime, {})
    case.validate_response(response, checks=CHECKS)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "wrong_credentials")


@ADMIN_SCHEMA.parametrize()
@hypothesis.settings(SETTINGS, max_examples=UNAUTHENTICATED_EXAMPLES)
def test_admin_routes_refuse_requests_without_a_token(
    case: schemathesis.Case, runtime: Runtime, admin: dict[str, str]
) -> None:
    if not admin:
        pytest.skip("no admin_headers: the admin routes are not behind the authorizer")
    response = _send(case, runtime, {})
    if _is_a_route(case.method, case.formatted_path):
        expected = (401, {"message": "Unauthorized"})
    else:  # a method the path does not have: API Gateway's 403, before any authorizer
        expected = (403, {"message": "Missing Authentication Token"})
    assert (response.status_code, response.json()) == expected, response.text[:300]


def test_at_least_1000_generated_requests_were_sent(record_property: Callable[[str, object], None]) -> None:
    total = sum(SENT.values())
    if not total:
        pytest.skip("the schemathesis tests did not run")
    line = (
        f"schemathesis: {total} requests to {len(SENT)} operations in {time.monotonic() - STARTED:.0f} s "
        f"(fewest: {min(SENT.values())}); statuses {dict(sorted(STATUSES.items()))}"
    )
    record_property("schemathesis", line)
    print(line)
    assert len(SENT) == len(ROUTES), sorted(SENT)
    assert total >= MIN_REQUESTS, line
