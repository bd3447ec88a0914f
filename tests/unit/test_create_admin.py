"""scripts/create_admin.py (`make admin`): the first admin of a deployed stack, under moto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.support import REGION, load_script

load_script("publish_web")  # create_admin imports it as scripts/ does
create_admin = load_script("create_admin")


@pytest.fixture
def pool() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        cognito = boto3.client("cognito-idp", region_name=REGION)
        pool_id = cognito.create_user_pool(PoolName="mailroom-admins", UsernameAttributes=["email"])["UserPool"]["Id"]
        cognito.create_group(UserPoolId=pool_id, GroupName="admins")
        yield cognito, pool_id


def test_the_admin_is_created_verified_and_put_in_the_admins_group(pool: tuple[Any, str]) -> None:
    cognito, pool_id = pool
    assert create_admin.create_admin(cognito, pool_id, " Ada@Example.com ") is True
    user = cognito.admin_get_user(UserPoolId=pool_id, Username="ada@example.com")
    attributes = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
    assert attributes["email"] == "ada@example.com" and attributes["email_verified"] == "true"
    assert user["UserStatus"] == "FORCE_CHANGE_PASSWORD"  # Cognito mailed a temporary password
    groups = cognito.admin_list_groups_for_user(UserPoolId=pool_id, Username="ada@example.com")["Groups"]
    assert [g["GroupName"] for g in groups] == ["admins"]
    # again: kept, not an error
    assert create_admin.create_admin(cognito, pool_id, "ada@example.com") is False


class _Session:
    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs

    def client(self, service: str) -> Any:
        if service == "cloudformation":
            outputs = [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]
            return type("Cfn", (), {"describe_stacks": lambda _self, StackName: {"Stacks": [{"Outputs": outputs}]}})()
        return boto3.client(service, region_name=REGION)


def test_main_finds_the_pool_in_the_stack_outputs(pool: tuple[Any, str], capsys: pytest.CaptureFixture[str]) -> None:
    cognito, pool_id = pool
    session = _Session({"AdminUserPoolId": pool_id, "WebUrl": "https://d1.cloudfront.net/"})
    argv = ["--email", "bob@example.com", "--stack", "mailroom-dev", "--region", REGION]
    assert create_admin.main(argv, session=session) == 0
    assert "sign in at https://d1.cloudfront.net/admin" in capsys.readouterr().out
    assert cognito.admin_get_user(UserPoolId=pool_id, Username="bob@example.com")["Username"]


def test_main_refuses_a_stack_without_the_pool_and_a_non_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with mock_aws():
        argv = ["--email", "bob@example.com", "--stack", "old-stack", "--region", REGION]
        assert create_admin.main(argv, session=_Session({"WebUrl": "https://x/"})) == 1
        assert "no output AdminUserPoolId" in capsys.readouterr().err
        assert create_admin.main(["--email", "bob", "--stack", "s", "--region", REGION]) == 2
