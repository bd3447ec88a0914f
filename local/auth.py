"""API Gateway's Cognito user pool authorizer, locally, with the same tokens.

A route whose event (or its API's ``DefaultAuthorizer``) names a ``COGNITO_USER_POOLS``
authorizer is served only to a request whose identity header (``Authorization`` unless the
authorizer says otherwise) holds a valid ID token of one of the authorizer's user pools:

* the JWT's RS256 signature verifies with the pool's JSON Web Key Set, fetched from the pool's
  ``/.well-known/jwks.json`` (moto serves it, as Cognito does; a kid not in the cached set
  fetches it again once);
* ``iss`` is ``https://cognito-idp.<region>.amazonaws.com/<pool id>`` of one of the pools (a
  token of any other pool -- moto signs every pool with the same key -- is refused here);
* ``exp`` is in the future, ``token_use`` is ``id`` (an access token is for scopes, which no
  route asks for);
* the token is the header's whole value, or follows ``Bearer``;
* an ``Identity.ValidationExpression`` must match the value first.

Anything else is API Gateway's **401** ``{"message":"Unauthorized"}`` and the function is
not invoked. A valid token's claims reach the function as ``requestContext.authorizer.claims``,
all values strings as API Gateway's REST authorizer passes them (a list such as
``cognito:groups`` joined with commas). The functions' own checks (``mailroom.authz``) then run
exactly as in AWS.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .template import AuthorizerSpec, RouteSpec, Stack

__all__ = ["CognitoAuthorizers", "issuer_of"]


def issuer_of(user_pool_arn: str) -> str:
    """The ``iss`` of a pool's tokens: ``arn:aws:cognito-idp:<region>:<account>:userpool/<id>``."""
    region = user_pool_arn.split(":")[3]
    pool_id = user_pool_arn.rsplit("/", 1)[-1]
    return f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"


def _fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the local moto server's http URL  # nosec B310
        return json.loads(response.read())


class CognitoAuthorizers:
    """``claims(route, headers)``: the verified claims, or None for API Gateway's 401."""

    def __init__(
        self,
        stack: Stack,
        endpoint_url: Callable[[], str],
        *,
        clock: Callable[[], float] = time.time,
        fetch: Callable[[str], Any] = _fetch_json,
    ) -> None:
        self._stack = stack
        self._endpoint_url = endpoint_url
        self._clock = clock
        self._fetch = fetch
        self._specs: dict[tuple[str, str], AuthorizerSpec] = {}
        self._keys: dict[str, KeySet] = {}
        self._lock = threading.Lock()

    def spec(self, route: RouteSpec) -> AuthorizerSpec:
        assert route.api is not None and route.authorizer is not None
        key = (route.api, route.authorizer)
        with self._lock:
            if key not in self._specs:
                self._specs[key] = self._stack.authorizer(route.api, route.authorizer)
            return self._specs[key]

    def claims(self, route: RouteSpec, headers: Iterable[tuple[str, str]]) -> dict[str, str] | None:
        spec = self.spec(route)
        value = next((v for k, v in headers if k.lower() == spec.header.lower()), "").strip()
        if not value or (spec.validation_expression and not re.fullmatch(spec.validation_expression, value)):
            return None
        token = value[7:].strip() if value[:7].lower() == "bearer " else value
        issuers = {issuer_of(arn): arn for arn in spec.user_pool_arns}
        try:
            header, unverified = _unverified(token)
            issuer = unverified.get("iss")
            if issuer not in issuers:
                return None
            keys = self._key_set(issuer)
            if header.get("kid") not in {key.kid for key in keys.keys}:
                keys = self._key_set(issuer, refresh=True)  # a rotated key set
            decoded = jwt.decode(token, keys, algorithms=["RS256"])
        except (JoseError, ValueError, KeyError, TypeError):
            return None
        claims = decoded.claims
        if claims.get("iss") != issuer or claims.get("token_use") != "id":
            return None
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or expires <= self._clock():
            return None
        return {name: _claim_string(value) for name, value in claims.items()}

    def _key_set(self, issuer: str, *, refresh: bool = False) -> KeySet:
        with self._lock:
            if refresh or issuer not in self._keys:
                pool_path = issuer.rsplit("/", 1)[-1]
                document = self._fetch(f"{self._endpoint_url()}/{pool_path}/.well-known/jwks.json")
                self._keys[issuer] = KeySet.import_key_set(document)
            return self._keys[issuer]


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload before verification: only to pick the pool's keys by ``iss``."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWS compact token")
    header, payload = (json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))) for part in parts[:2])
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise ValueError("the header or payload is not an object")
    return header, payload


def _claim_string(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
