"""Create an admin of a deployed stack: a user in its admins' Cognito user pool.

``make admin EMAIL=you@example.com`` runs it (after ``make deploy``)::

    python scripts/create_admin.py --email you@example.com [--config-env default|prod] [--stack NAME] [--region R]

1. The stack: ``--stack``, else ``stack_name`` of the config environment in samconfig.toml
   (and its ``region`` and ``profile``), as ``make deploy`` used.
2. Its output ``AdminUserPoolId`` (CloudFormation ``DescribeStacks``).
3. ``AdminCreateUser`` with the address as the user name, marked verified: Cognito mails
   the person a temporary password (valid for 3 days). An existing user is kept.
4. ``AdminAddUserToGroup`` to the admins group (``--group``, default ``admins``): only its
   members may use the admin routes.

The person then opens ``<WebUrl>/admin``, signs in with the temporary password, and chooses
their own. Nobody, not even this script, ever sees that password; to remove an admin, take
them out of the group or delete the user (``aws cognito-idp admin-delete-user``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from publish_web import SAMCONFIG, PublishError, deployed_stack

__all__ = ["create_admin", "main"]


def create_admin(cognito: Any, user_pool_id: str, email: str, group: str = "admins") -> bool:
    """Create the user (Cognito mails the temporary password) and put it in ``group``.
    Returns False when the user existed already (it is still put in the group)."""
    address = email.strip().lower()
    created = True
    try:
        cognito.admin_create_user(
            UserPoolId=user_pool_id,
            Username=address,
            UserAttributes=[{"Name": "email", "Value": address}, {"Name": "email_verified", "Value": "true"}],
            DesiredDeliveryMediums=["EMAIL"],
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "UsernameExistsException":
            raise
        created = False
    cognito.admin_add_user_to_group(UserPoolId=user_pool_id, Username=address, GroupName=group)
    return created


def main(argv: Sequence[str] | None = None, *, session: Any = None) -> int:
    parser = argparse.ArgumentParser(description="Create an admin of a deployed Mailroom stack (Cognito).")
    parser.add_argument("--email", required=True, help="the admin's address (Cognito mails the temporary password)")
    parser.add_argument("--group", default="admins", help="the admins group (default: admins)")
    parser.add_argument("--config-env", default="default", help="samconfig.toml environment (default: default)")
    parser.add_argument("--stack", help="the stack's name (default: stack_name of the config environment)")
    parser.add_argument("--region", help="the stack's region (default: samconfig's, else the AWS configuration's)")
    parser.add_argument("--samconfig", type=Path, default=SAMCONFIG, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if "@" not in args.email:
        print(f"create_admin: {args.email!r} is not an email address", file=sys.stderr)
        return 2
    try:
        session, stack, outputs = deployed_stack(args.config_env, args.stack, args.region, args.samconfig, session)
        if "AdminUserPoolId" not in outputs:
            raise PublishError(f"stack {stack} has no output AdminUserPoolId: deploy it first (make deploy)")
        created = create_admin(session.client("cognito-idp"), outputs["AdminUserPoolId"], args.email, args.group)
    except (PublishError, ClientError) as error:
        print(f"create_admin: {error}", file=sys.stderr)
        return 1
    where = outputs.get("WebUrl", "the web app's URL").rstrip("/") + "/admin"
    if created:
        print(f"Created {args.email.lower()} in {args.group}: Cognito mails a temporary password; sign in at {where}.")
    else:
        print(f"{args.email.lower()} existed already; it is in {args.group} now. Sign in at {where}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
