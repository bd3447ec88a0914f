"""The local first admin: a user in each of the stack's Cognito user pools (on moto).

In AWS the first admin is created by hand (``scripts/create_admin.py``; docs/security.md).
Locally the runtime creates one at start, so that ``make run`` opens a console one can sign
in to: ``admin@example.com`` (``MAILROOM_LOCAL_ADMIN_EMAIL``) with the password
``MAILROOM_LOCAL_ADMIN_PASSWORD``, else a fresh random one, printed in the banner. The user
is confirmed (a permanent password: no first-sign-in challenge) and a member of every
``AWS::Cognito::UserPoolGroup`` of its pool, so it is what an admin is in AWS.

``token()`` signs it in through the pool's first app client (``USER_PASSWORD_AUTH``, as the
console's sign-in route does) and keeps the ID token until five minutes before it expires:
the tests' and the CLI's way to call the admin routes.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .provision import Provisioned
from .template import USER_POOL_GROUP_TYPE, Stack

__all__ = ["DEFAULT_ADMIN_EMAIL", "LocalAdmin", "create_local_admin", "random_password"]

DEFAULT_ADMIN_EMAIL = "admin@example.com"


def random_password() -> str:
    """A password any sensible pool policy accepts: 19+ characters, upper, lower, digit."""
    return f"Mr7-{secrets.token_urlsafe(12)}"


@dataclass
class LocalAdmin:
    """An admin of one local user pool, and its cached ID token."""

    email: str
    password: str
    user_pool_id: str
    client_id: str
    cognito: Callable[[], Any]
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._token = ""
        self._expires = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        """A valid ID token of this admin (signed in again when near expiry)."""
        with self._lock:
            if self.clock() > self._expires - 300:
                result = self.cognito().initiate_auth(
                    ClientId=self.client_id,
                    AuthFlow="USER_PASSWORD_AUTH",
                    AuthParameters={"USERNAME": self.email, "PASSWORD": self.password},
                )["AuthenticationResult"]
                self._token = str(result["IdToken"])
                self._expires = self.clock() + int(result["ExpiresIn"])
            return self._token


def create_local_admin(
    stack: Stack, provisioned: Provisioned, cognito: Callable[[], Any], email: str, password: str
) -> LocalAdmin | None:
    """The admin of the user pool of the stack's first app client (None without a client)."""
    found = next(
        (
            (pool, client_id)
            for client, client_id in provisioned.user_pool_clients.items()
            if (pool := _pool_of(stack, client)) in provisioned.user_pools
        ),
        None,
    )
    if found is None:
        return None
    pool_logical_id, client_id = found
    pool_id = provisioned.user_pools[pool_logical_id]
    client = cognito()
    with contextlib.suppress(client.exceptions.UsernameExistsException):
        client.admin_create_user(
            UserPoolId=pool_id,
            Username=email,
            MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
        )
    client.admin_set_user_password(UserPoolId=pool_id, Username=email, Password=password, Permanent=True)
    for group_logical_id in stack.of_type(USER_POOL_GROUP_TYPE):
        if _pool_of(stack, group_logical_id) == pool_logical_id:
            client.admin_add_user_to_group(
                UserPoolId=pool_id, Username=email, GroupName=str(stack.ref(group_logical_id))
            )
    return LocalAdmin(email=email, password=password, user_pool_id=pool_id, client_id=client_id, cognito=cognito)


def _pool_of(stack: Stack, logical_id: str) -> str | None:
    """The logical id of the pool a client or group names with ``UserPoolId: !Ref Pool``."""
    pool = (stack.resources[logical_id].get("Properties") or {}).get("UserPoolId")
    return str(pool["Ref"]) if isinstance(pool, dict) and "Ref" in pool else None
