"""The local extension of moto's DynamoDB: atomic conditional writes, item-level transactions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mailroom_local import moto_dynamodb

REGION = "us-east-1"


@pytest.fixture
def table() -> Iterator[Any]:
    moto_dynamodb.install()
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _claim(client: Any, key: str) -> bool:
    try:
        client.put_item(TableName="t", Item={"pk": {"S": key}}, ConditionExpression="attribute_not_exists(pk)")
    except ClientError:
        return False
    return True


def test_of_many_concurrent_conditional_claims_exactly_one_wins(table: Any) -> None:
    for round_ in range(20):
        wins: list[bool] = []
        barrier = threading.Barrier(8)

        def claim(key: str, barrier: threading.Barrier = barrier, wins: list[bool] = wins) -> None:
            barrier.wait()
            wins.append(_claim(table, key))

        threads = [threading.Thread(target=claim, args=(f"k{round_}",)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert wins.count(True) == 1


def test_a_cancelled_transaction_restores_only_its_own_items(table: Any) -> None:
    table.put_item(TableName="t", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    table.put_item(TableName="t", Item={"pk": {"S": "other"}, "n": {"N": "1"}})
    with pytest.raises(ClientError) as caught:
        table.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": "t",
                        "Key": {"pk": {"S": "a"}},
                        "UpdateExpression": "SET n = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}},
                    }
                },
                {"Put": {"TableName": "t", "Item": {"pk": {"S": "new"}}}},
                {
                    "Update": {
                        "TableName": "t",
                        "Key": {"pk": {"S": "b"}},
                        "UpdateExpression": "SET n = :one",
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        )
    reasons = [reason["Code"] for reason in caught.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "ConditionalCheckFailed"]
    assert table.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"]["n"] == {"N": "1"}
    assert "Item" not in table.get_item(TableName="t", Key={"pk": {"S": "new"}})
    assert "Item" not in table.get_item(TableName="t", Key={"pk": {"S": "b"}})
    assert table.get_item(TableName="t", Key={"pk": {"S": "other"}})["Item"]["n"] == {"N": "1"}


def test_a_transaction_commits_every_item_and_returns_the_old_item_on_refusal(table: Any) -> None:
    table.put_item(TableName="t", Item={"pk": {"S": "x"}, "status": {"S": "sent"}})
    table.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "y"}}, "ConditionExpression": "attribute_not_exists(pk)"}},
            {
                "Update": {
                    "TableName": "t",
                    "Key": {"pk": {"S": "c"}},
                    "UpdateExpression": "ADD n :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
        ]
    )
    assert table.get_item(TableName="t", Key={"pk": {"S": "c"}})["Item"]["n"] == {"N": "1"}
    with pytest.raises(ClientError) as caught:
        table.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": "t",
                        "Item": {"pk": {"S": "x"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
            ]
        )
    assert caught.value.response["CancellationReasons"][0]["Item"]["status"] == {"S": "sent"}


def test_a_transaction_never_copies_whole_tables(table: Any) -> None:
    # moto's own version deep-copies every table it touches (a 10,000-item copy per
    # transaction, and a crash when another request writes meanwhile)
    for index in range(50):
        table.put_item(TableName="t", Item={"pk": {"S": f"filler-{index}"}})
    with mock.patch("moto.dynamodb.models.copy.deepcopy", side_effect=AssertionError("whole-table copy")):
        table.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": "z"}}}}])
    assert table.get_item(TableName="t", Key={"pk": {"S": "z"}})["Item"] == {"pk": {"S": "z"}}
