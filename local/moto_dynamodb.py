"""moto's DynamoDB made safe for a threaded server: atomic writes and item-level transactions.

Two gaps in moto 5.2.5 matter as soon as several functions write at once:

* **Conditional writes are not atomic.** ``put_item``/``update_item``/``delete_item`` check
  the condition and then write, with nothing in between held: two threads of the moto
  server can both pass ``attribute_not_exists(pk)`` and both "claim" the same record - the
  very thing the claim exists to prevent. DynamoDB evaluates a condition and writes
  atomically.
* **TransactWriteItems copies and restores whole tables.** It deep-copies every table it
  touches before it starts (slow: a copy of a 10,000-item table per transaction, and it
  fails with "dictionary changed size during iteration" when another thread writes
  meanwhile), and on a cancelled transaction it puts the copies back, undoing every write
  other requests made in between.

:func:`install` wraps the backend's write operations in one lock (writes are serialized,
reads are not held up), and replaces ``transact_write_items`` with a version that saves
and restores only the items the transaction touches. Install it before the first
request; installing again changes nothing.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["install"]

_WRITE_LOCK = threading.RLock()
_WRITES = ("put_item", "update_item", "delete_item", "batch_write_item")
_MARK = "_mailroom_serialized"


def install() -> None:
    """Serialize moto's DynamoDB writes and make its transactions item-level (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend, _MARK, False):
        return
    for name in _WRITES:
        setattr(DynamoDBBackend, name, _serialized(getattr(DynamoDBBackend, name)))
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    setattr(DynamoDBBackend, _MARK, True)


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _WRITE_LOCK:
            return method(*args, **kwargs)

    return wrapper


def _key_of(table: Any, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


class _Refused(Exception):
    """A transaction item whose condition failed, with the item as it was (if asked for)."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("The conditional request failed")
        self.item = item


def _apply(
    backend: Any,
    entry: dict[str, Any],
    saved: list[tuple[str, dict[str, Any], dict[str, Any] | None]],
    targets: set[tuple[str, str]],
) -> None:
    """Check and apply one transaction item, saving the item it changes first."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import MultipleTransactionsException

    op_type, op = next(iter(entry.items()))
    if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
        raise ValueError("Unsupported transaction operation")
    table_name = op["TableName"]
    key = _key_of(backend.get_table(table_name), op_type, op)
    target = (str(table_name), str(dict(sorted(key.items()))))
    if target in targets:
        raise MultipleTransactionsException()
    targets.add(target)
    names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    condition = op.get("ConditionExpression")
    current = backend.get_item(table_name, key)
    if condition is not None and not get_filter_expression(condition, names, values).expr(current):
        wanted = op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current is not None
        raise _Refused(current.to_json()["Attributes"] if wanted else None)
    if op_type == "ConditionCheck":
        return
    saved.append((table_name, key, copy.deepcopy(current.to_json()["Attributes"]) if current is not None else None))
    if op_type == "Put":
        backend.put_item(table_name, op["Item"])
    elif op_type == "Delete":
        backend.delete_item(table_name, key)
    else:
        backend.update_item(
            table_name,
            key,
            update_expression=op["UpdateExpression"],
            expression_attribute_names=names,
            expression_attribute_values=values,
        )


def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto's ``transact_write_items``, under the write lock, saving and restoring only the
    items it touches (instead of deep copies of whole tables)."""
    from moto.dynamodb.exceptions import (
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    with _WRITE_LOCK:
        if len(transact_items) > 100:
            raise TooManyTransactionsException()
        saved: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        targets: set[tuple[str, str]] = set()
        errors: list[tuple[str | None, str | None, dict[str, Any] | None]] = []

        def restore() -> None:
            for table_name, key, before in reversed(saved):
                if before is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, before)

        for entry in transact_items:
            if len(entry) > 1:
                raise TransactWriteSingleOpException
            try:
                _apply(self, entry, saved, targets)
                errors.append((None, None, None))
            except (MultipleTransactionsException, MockValidationException):
                restore()
                raise
            except _Refused as refused:
                errors.append(("ConditionalCheckFailed", str(refused), refused.item))
            except Exception as exc:  # as moto does: any other failure cancels the transaction too
                errors.append((type(exc).__name__, str(exc), None))
        if any(code is not None for code, _, _ in errors):
            restore()
            raise TransactionCanceledException(errors)
