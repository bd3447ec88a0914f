"""Admin authentication: the sign-in function against the user pool (moto), the admins-only
check of the admin function (mailroom.authz), and the local API's Cognito authorizer
(local/auth.py) with real, forged, expired and foreign tokens."""

from __future__ import annotations

import base64
import copy
import io
import json
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest
from joserfc.jwk import RSAKey

from mailroom.api import ApiError
from mailroom.authz import admin_of, groups_of
from mailroom.observability import logger
from mailroom_local.auth import CognitoAuthorizers, issuer_of
from mailroom_local.template import RouteSpec, Stack
from tests.conftest import LambdaContext
from tests.support import REGION, jwt_claims, load_event, moto_signing_key, sign_jwt

PASSWORD = "Admin-password-1"


def _pool(stack: Stack) -> tuple[str, str]:
    return str(stack.ref("AdminUserPool")), str(stack.ref("AdminUserPoolClient"))


def _user(stack: Stack, email: str, *, groups: tuple[str, ...] = ("admins",), temporary: bool = False) -> None:
    cognito = boto3.client("cognito-idp", region_name=REGION)
    pool_id, _ = _pool(stack)
    cognito.admin_create_user(
        UserPoolId=pool_id,
        Username=email,
        MessageAction="SUPPRESS",
        TemporaryPassword="Temporary-pass-1",
        UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
    )
    if not temporary:
        cognito.admin_set_user_password(UserPoolId=pool_id, Username=email, Password=PASSWORD, Permanent=True)
    for group in groups:
        cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=email, GroupName=group)


def _tokens(client_id: str, email: str, password: str = PASSWORD) -> dict[str, Any]:
    cognito = boto3.client("cognito-idp", region_name=REGION)
    result = cognito.initiate_auth(
        ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH", AuthParameters={"USERNAME": email, "PASSWORD": password}
    )
    return dict(result["AuthenticationResult"])


def _post(path: str, body: Any) -> dict[str, Any]:
    event = load_event("auth_sign_in.json")
    event.update({"path": path, "resource": path, "body": json.dumps(body)})
    return event


def _call(module: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = module.lambda_handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


# ------------------------------------------------------------------ sign-in function
@pytest.fixture
def auth(stack: Stack, load_function: Callable[..., ModuleType]) -> ModuleType:
    return load_function("AuthFunction")


def test_the_sample_sign_in_event_signs_an_admin_in(stack: Stack, auth: ModuleType) -> None:
    _user(stack, "admin@example.com")
    event = load_event("auth_sign_in.json")
    event["body"] = json.dumps({"email": "Admin@Example.com", "password": PASSWORD})  # any case
    status, body = _call(auth, event)
    assert status == 200 and body["expires_in"] > 0
    claims = jwt_claims(body["id_token"])
    assert claims["email"] == "admin@example.com" and claims["token_use"] == "id"
    assert "admins" in claims["cognito:groups"]


def test_a_wrong_password_and_an_unknown_address_are_the_same_401(stack: Stack, auth: ModuleType) -> None:
    _user(stack, "admin@example.com")
    wrong = _call(auth, _post("/auth/sign-in", {"email": "admin@example.com", "password": "Wrong-password-1"}))
    unknown = _call(auth, _post("/auth/sign-in", {"email": "nobody@example.com", "password": "Wrong-password-1"}))
    assert wrong == unknown
    assert wrong[0] == 401 and wrong[1]["error"]["code"] == "wrong_credentials"


def test_the_first_sign_in_asks_for_a_new_password_that_must_meet_the_policy(stack: Stack, auth: ModuleType) -> None:
    _user(stack, "new@example.com", temporary=True)
    status, challenge = _call(
        auth, _post("/auth/sign-in", {"email": "new@example.com", "password": "Temporary-pass-1"})
    )
    assert status == 200 and challenge["challenge"] == "NEW_PASSWORD_REQUIRED" and "id_token" not in challenge
    weak = {"email": "new@example.com", "session": challenge["session"], "new_password": "short"}
    status, refused = _call(auth, _post("/auth/new-password", weak))
    assert status == 400 and refused["error"]["field"] == "new_password"
    chosen = {"email": "new@example.com", "session": challenge["session"], "new_password": "Chosen-password-7"}
    status, signed_in = _call(auth, _post("/auth/new-password", chosen))
    assert status == 200 and signed_in["id_token"]
    assert _tokens(_pool(stack)[1], "new@example.com", "Chosen-password-7")["IdToken"]


def test_an_unknown_or_expired_sign_in_session_is_a_401(stack: Stack, auth: ModuleType) -> None:
    """Cognito says NotAuthorizedException ("Invalid session"); moto needs local/moto_ext for that."""
    _user(stack, "new@example.com", temporary=True)
    unknown = {"email": "new@example.com", "session": "s" * 40, "new_password": "Chosen-password-7"}
    status, body = _call(auth, _post("/auth/new-password", unknown))
    assert status == 401 and body["error"]["code"] == "wrong_credentials"


@pytest.mark.parametrize(
    "body",
    [
        {"email": "admin@example.com"},
        {"email": "not-an-address", "password": "x"},
        {"email": "admin@example.com", "password": "x", "extra": 1},
        {"email": "admin@example.com", "password": "x" * 257},
    ],
)
def test_a_malformed_sign_in_is_a_400_naming_the_field(stack: Stack, auth: ModuleType, body: dict[str, Any]) -> None:
    status, answer = _call(auth, _post("/auth/sign-in", body))
    assert status == 400 and answer["error"]["field"] in body | {"password": None}


def test_the_password_never_reaches_the_log(stack: Stack, auth: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", buffer)  # the functions' one logger
    _user(stack, "admin@example.com")
    _call(auth, _post("/auth/sign-in", {"email": "admin@example.com", "password": "Wrong-password-1"}))
    _, body = _call(auth, _post("/auth/sign-in", {"email": "admin@example.com", "password": PASSWORD}))
    logs = buffer.getvalue()
    assert "sign-in refused" in logs  # the log is captured here: the checks below can fail
    assert "Wrong-password-1" not in logs and PASSWORD not in logs and body["id_token"] not in logs
    assert "admin@example.com" not in logs


# ------------------------------------------------------------- the admins-only check
def _event_with(claims: dict[str, Any] | None) -> dict[str, Any]:
    event = load_event("admin_create_campaign.json")
    event["httpMethod"], event["body"] = "GET", None
    event["path"] = event["resource"] = "/admin/campaigns"
    if claims is None:
        event["requestContext"].pop("authorizer", None)
    else:
        event["requestContext"]["authorizer"] = {"claims": claims}
    return event


def test_the_admin_function_answers_only_members_of_the_admins_group(
    stack: Stack, load_function: Callable[..., ModuleType]
) -> None:
    admin = load_function("AdminFunction")
    sample = load_event("admin_create_campaign.json")
    claims = sample["requestContext"]["authorizer"]["claims"]
    assert _call(admin, _event_with(claims))[0] == 200
    assert _call(admin, _event_with({**claims, "cognito:groups": "editors,admins"}))[0] == 200
    status, body = _call(admin, _event_with({**claims, "cognito:groups": "editors"}))
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert _call(admin, _event_with({k: v for k, v in claims.items() if k != "cognito:groups"}))[0] == 403
    # no verified identity at all (an authorizer taken off a route by mistake): 401, not the data
    status, body = _call(admin, _event_with(None))
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert _call(admin, _event_with({**claims, "token_use": "access"}))[0] == 401


def test_the_admin_check_runs_before_any_input_is_read(stack: Stack, load_function: Callable[..., ModuleType]) -> None:
    admin = load_function("AdminFunction")
    event = load_event("admin_create_campaign.json")
    event["requestContext"].pop("authorizer")
    event["body"] = "{not json"
    status, body = _call(admin, event)
    assert status == 401, body  # not the 400 that would tell a stranger about the route's input


@pytest.mark.parametrize(
    ("value", "groups"),
    [
        ("admins", {"admins"}),
        ("admins,editors", {"admins", "editors"}),
        ("[admins editors]", {"admins", "editors"}),
        (["admins"], {"admins"}),
        ("", set()),
        (None, set()),
    ],
)
def test_groups_are_read_in_each_shape_api_gateway_passes(value: Any, groups: set[str]) -> None:
    assert groups_of({} if value is None else {"cognito:groups": value}) == groups


def test_admin_of_names_the_subject() -> None:
    admin = admin_of(
        {"requestContext": {"authorizer": {"claims": {"sub": "abc", "cognito:groups": "admins"}}}}, "admins"
    )
    assert admin.subject == "abc" and admin.groups == {"admins"}
    with pytest.raises(ApiError) as refused:
        admin_of({"requestContext": {"authorizer": {"claims": {"sub": "abc"}}}}, "admins")
    assert refused.value.status == 403


# --------------------------------------------------------- the local Cognito authorizer
MOTO_KEY = moto_signing_key()


@pytest.fixture
def authorizer(stack: Stack) -> tuple[CognitoAuthorizers, RouteSpec, dict[str, Any]]:
    """The authorizer of GET /admin/campaigns, keys fetched from moto's pool, and tokens."""
    route = next(r for r in stack.routes if r.path == "/admin/campaigns" and r.method == "get")
    fetched: list[str] = []

    def fetch(url: str) -> Any:
        fetched.append(url)
        public = dict(MOTO_KEY.as_dict(private=False))
        return {"keys": [public]}

    authorizers = CognitoAuthorizers(stack, lambda: "http://moto.invalid", fetch=fetch)
    _user(stack, "admin@example.com")
    tokens = _tokens(_pool(stack)[1], "admin@example.com")
    return authorizers, route, {"tokens": tokens, "fetched": fetched}


def test_a_valid_id_token_gives_its_claims_as_api_gateway_does(authorizer: Any, stack: Stack) -> None:
    authorizers, route, found = authorizer
    assert route.authorizer == "AdminUsers"
    token = found["tokens"]["IdToken"]
    claims = authorizers.claims(route, [("Authorization", token)])
    assert claims is not None and claims["email"] == "admin@example.com" and claims["cognito:groups"] == "admins"
    assert all(isinstance(value, str) for value in claims.values())
    assert authorizers.claims(route, [("authorization", f"Bearer {token}")]) == claims
    pool_id, _ = _pool(stack)
    assert found["fetched"] == [f"http://moto.invalid/{pool_id}/.well-known/jwks.json"]  # once, then cached


def test_missing_forged_expired_foreign_and_access_tokens_are_refused(authorizer: Any, stack: Stack) -> None:
    authorizers, route, found = authorizer
    token = found["tokens"]["IdToken"]
    claims = jwt_claims(token)
    header, _, signature = token.split(".")
    promoted = {**claims, "cognito:groups": ["admins", "owners"]}
    altered = ".".join(
        [header, base64.urlsafe_b64encode(json.dumps(promoted).encode()).decode().rstrip("="), signature]
    )
    other_key = RSAKey.generate_key(2048)
    other_pool = copy.deepcopy(claims) | {
        "iss": issuer_of(f"arn:aws:cognito-idp:{REGION}:123456789012:userpool/{REGION}_other")
    }
    refused = {
        "no header": [],
        "empty": [("Authorization", "")],
        "not a JWT": [("Authorization", "Bearer nonsense")],
        "altered payload": [("Authorization", altered)],
        "signed with another key": [("Authorization", sign_jwt(claims, other_key))],
        "expired": [("Authorization", sign_jwt({**claims, "exp": int(time.time()) - 1}, MOTO_KEY))],
        "no expiry": [("Authorization", sign_jwt({k: v for k, v in claims.items() if k != "exp"}, MOTO_KEY))],
        "another pool": [("Authorization", sign_jwt(other_pool, MOTO_KEY))],
        "access token": [("Authorization", found["tokens"]["AccessToken"])],
        "alg none": [("Authorization", _unsigned(claims))],
    }
    for reason, headers in refused.items():
        assert authorizers.claims(route, headers) is None, reason
    # the control: the same claims re-signed as they were are accepted
    assert authorizers.claims(route, [("Authorization", sign_jwt(claims, MOTO_KEY))]) is not None


def _unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_a_token_of_a_second_real_pool_is_refused(authorizer: Any, stack: Stack) -> None:
    authorizers, route, _ = authorizer
    cognito = boto3.client("cognito-idp", region_name=REGION)
    pool = cognito.create_user_pool(PoolName="someone-elses")["UserPool"]["Id"]
    client = cognito.create_user_pool_client(
        UserPoolId=pool, ClientName="theirs", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    cognito.admin_create_user(UserPoolId=pool, Username="admin@example.com", MessageAction="SUPPRESS")
    cognito.admin_set_user_password(
        UserPoolId=pool, Username="admin@example.com", Password="Their-Pass-1!", Permanent=True
    )
    cognito.create_group(UserPoolId=pool, GroupName="admins")
    cognito.admin_add_user_to_group(UserPoolId=pool, Username="admin@example.com", GroupName="admins")
    theirs = _tokens(client, "admin@example.com", "Their-Pass-1!")["IdToken"]
    assert authorizers.claims(route, [("Authorization", theirs)]) is None


def test_every_route_but_the_public_ones_has_the_authorizer(stack: Stack) -> None:
    public = {(r.method, r.path) for r in stack.routes if r.authorizer is None}
    assert public == {
        ("post", "/subscriptions"),
        ("get", "/subscriptions/confirm"),
        ("get", "/unsubscribe"),
        ("post", "/unsubscribe"),
        ("post", "/auth/sign-in"),
        ("post", "/auth/new-password"),
    }
    guarded = [r for r in stack.routes if r.authorizer is not None]
    assert guarded and all(r.path.startswith("/admin/") or r.path == "/admin" for r in guarded)
    assert {r.function for r in guarded} == {"AdminFunction"}
    spec = stack.authorizer("MailroomApi", "AdminUsers")
    assert spec.header == "Authorization"
    assert spec.user_pool_arns == (f"arn:aws:cognito-idp:{REGION}:123456789012:userpool/{_pool(stack)[0]}",)
