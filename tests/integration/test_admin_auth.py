"""Every admin route, over HTTP on the embedded runtime: 401 without a token and with a forged,
expired or foreign one (API Gateway's Cognito authorizer, emulated with the same tokens), 403
for a signed-in user outside the admins group (the function's own check), and open to an admin.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from joserfc.jwk import RSAKey

from mailroom_local import Runtime
from tests.integration.conftest import http
from tests.support import jwt_claims, moto_signing_key, sign_jwt

pytestmark = pytest.mark.integration

PASSWORD = "Someone-else-1"


def _admin_routes(runtime: Runtime) -> list[tuple[str, str]]:
    """(METHOD, URL) of every guarded route, with a made-up id for its path parameter."""
    routes = [r for r in runtime.stack.routes if r.authorizer is not None]
    return [(r.method.upper(), runtime.api_url + r.path.replace("{id}", "c-" + uuid.uuid4().hex[:8])) for r in routes]


def _user_token(runtime: Runtime, pool_id: str, client_id: str, groups: tuple[str, ...]) -> str:
    cognito = runtime.client("cognito-idp")
    email = f"user-{uuid.uuid4().hex[:8]}@example.com"
    cognito.admin_create_user(UserPoolId=pool_id, Username=email, MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=pool_id, Username=email, Password=PASSWORD, Permanent=True)
    for group in groups:
        cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=email, GroupName=group)
    result = cognito.initiate_auth(
        ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH", AuthParameters={"USERNAME": email, "PASSWORD": PASSWORD}
    )
    return str(result["AuthenticationResult"]["IdToken"])


def _foreign_pool_token(runtime: Runtime) -> str:
    """An admin's ID token of another user pool on the same moto (the same signing key)."""
    cognito = runtime.client("cognito-idp")
    pool_id = cognito.create_user_pool(PoolName=f"other-{uuid.uuid4().hex[:6]}")["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName="other", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    cognito.create_group(UserPoolId=pool_id, GroupName="admins")
    return _user_token(runtime, pool_id, client_id, ("admins",))


def test_every_admin_route_refuses_a_missing_forged_expired_or_foreign_token(runtime: Runtime) -> None:
    routes = _admin_routes(runtime)
    # every /admin route of template.yaml is guarded, and only those
    assert len(routes) == len([r for r in runtime.stack.routes if r.path.startswith("/admin/")]) >= 17, routes
    good = runtime.admin_token()
    claims = jwt_claims(good)
    header, _, signature = good.split(".")
    promoted = base64.urlsafe_b64encode(json.dumps(claims | {"sub": "someone-else"}).encode()).decode().rstrip("=")
    tokens = {
        "forged (payload changed, signature kept)": f"{header}.{promoted}.{signature}",
        "forged (signed with another key)": sign_jwt(claims, RSAKey.generate_key(2048)),
        "expired": sign_jwt(claims | {"exp": int(time.time()) - 60}, moto_signing_key()),
        "of another user pool": _foreign_pool_token(runtime),
        "not a token": "let-me-in",
    }
    for method, url in routes:
        body = {} if method in ("POST", "PATCH") else None
        missing = http(method, url, body)
        assert missing.status == 401 and missing.json() == {"message": "Unauthorized"}, (method, url, missing.text)
        for reason, token in tokens.items():
            answer = http(method, url, body, {"Authorization": token})
            assert answer.status == 401, (method, url, reason, answer.status, answer.text)


def test_a_signed_in_user_outside_the_admins_group_is_forbidden_everywhere(runtime: Runtime) -> None:
    assert runtime.admin is not None
    outsider = _user_token(runtime, runtime.admin.user_pool_id, runtime.admin.client_id, ())
    for method, url in _admin_routes(runtime):
        answer = http(method, url, {} if method in ("POST", "PATCH") else None, {"Authorization": outsider})
        assert answer.status == 403 and answer.json()["error"]["code"] == "forbidden", (method, url, answer.text)


def test_an_admin_passes_the_authorizer_on_every_route(runtime: Runtime) -> None:
    headers = runtime.admin_headers()
    for method, url in _admin_routes(runtime):
        answer = http(method, url, {} if method in ("POST", "PATCH") else None, headers)
        # made-up ids and empty bodies: 200, 400, 404 or 409, but never refused as a stranger
        assert answer.status not in (401, 403) and answer.status < 500, (method, url, answer.status, answer.text)
    bearer = http(
        "GET", f"{runtime.api_url}/admin/campaigns", None, {"Authorization": f"Bearer {runtime.admin_token()}"}
    )
    assert bearer.status == 200


def test_the_public_routes_need_no_token(runtime: Runtime) -> None:
    assert http("POST", f"{runtime.api_url}/subscriptions", {"email": "open@example.com"}).status == 202
    assert http("GET", f"{runtime.api_url}/unsubscribe?token=x", headers={"Accept": "application/json"}).status == 400
    signed_in = http(
        "POST",
        f"{runtime.api_url}/auth/sign-in",
        {
            "email": runtime.admin.email if runtime.admin else "",
            "password": runtime.admin.password if runtime.admin else "",
        },
    )
    assert signed_in.status == 200 and jwt_claims(signed_in.json()["id_token"])["token_use"] == "id"
    answer = http("GET", f"{runtime.api_url}/admin/campaigns", headers={"Authorization": signed_in.json()["id_token"]})
    assert answer.status == 200


def test_ids_and_cursors_dynamodb_would_refuse_never_reach_it(runtime: Runtime) -> None:
    """On AWS a key over 2,048 bytes, or an empty one, is DynamoDB's ValidationException (a
    503 here); moto does not check, so the API must: a 404 for the id, a 400 for the cursor."""
    headers = runtime.admin_headers()
    for campaign_id in ("a" * 3000, "NOT-HEX", "0" * 31):
        answer = http("GET", f"{runtime.api_url}/admin/campaigns/{campaign_id}", headers=headers)
        assert answer.status == 404 and answer.json()["error"]["code"] == "not_found", answer.text
    draft = http("POST", f"{runtime.api_url}/admin/campaigns/preview", {"subject": "S", "content": "Hi"}, headers)
    assert draft.status == 200, draft.text  # the literal route is not an id
    for bad in ("", "x" * 1025, "\ud800"):
        # the shape of a real cursor of this listing, with one key string DynamoDB would refuse
        key = {"id": {"S": bad}, "kind": {"S": "campaign"}, "created_at": {"S": "2026-11-28T10:00:00Z"}}
        cursor = base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")
        answer = http("GET", f"{runtime.api_url}/admin/campaigns?cursor={cursor}", headers=headers)
        assert answer.status == 400 and answer.json()["error"]["field"] == "cursor", answer.text
