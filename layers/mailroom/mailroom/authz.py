"""Who may use the admin routes: the members of the admins group, and no one else.

API Gateway's Cognito authorizer (``AdminUsers`` in template.yaml) has already checked the
ID token's signature, issuer (the admins' user pool) and expiry, and hands its claims to
the function as ``requestContext.authorizer.claims``. The embedded runtime's API does the
same with the same tokens (local/auth.py), so this check is the same code in both.

Belt and braces: a request without claims (an authorizer removed from a route by mistake)
is 401 here too, and a signed-in user outside the group is 403.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailroom.api import ApiError

__all__ = ["Admin", "admin_of", "groups_of"]


@dataclass(frozen=True)
class Admin:
    """The signed-in admin: Cognito's ``sub`` (a stable id, not personal data) and groups."""

    subject: str
    groups: frozenset[str]


def groups_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """``cognito:groups`` as API Gateway's REST authorizer passes it (claims are strings:
    ``admins`` or ``admins,editors``; some paths give ``[admins editors]``) or a list."""
    value = claims.get("cognito:groups")
    if value is None:
        return frozenset()
    if isinstance(value, list | tuple):
        return frozenset(str(item) for item in value if str(item))
    return frozenset(part for part in re.split(r"[,\s]+", str(value).strip().strip("[]")) if part)


def admin_of(event: Mapping[str, Any], group: str) -> Admin:
    """The admin behind an API Gateway proxy event, or ApiError 401 (no verified identity)
    or 403 (signed in, but not in ``group``)."""
    context = event.get("requestContext") or {}
    authorizer = context.get("authorizer") or {}
    claims = authorizer.get("claims") if isinstance(authorizer, Mapping) else None
    if not isinstance(claims, Mapping) or not claims.get("sub"):
        raise ApiError(401, "unauthorized", "Sign in as an admin: this route needs an admin's token.")
    if claims.get("token_use", "id") != "id":
        raise ApiError(401, "unauthorized", "This route needs an ID token.")
    groups = groups_of(claims)
    if group not in groups:
        raise ApiError(403, "forbidden", f"This account is not in the {group} group.")
    return Admin(subject=str(claims["sub"]), groups=groups)
