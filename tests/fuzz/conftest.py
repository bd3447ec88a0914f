"""pytest 9.2 builds a test's node id from its original name and its callspec, which
schemathesis 4.32's items (one per API operation, the operation only in the item's name)
do not have: every operation's item of ``@schema.parametrize()`` gets the same node id,
and pytest-xdist, which schedules by node id, then runs one of them. Give each item back
the id its name says: ``test_x[POST /subscriptions]``.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import runtime  # noqa: F401 - the module-scoped runtime fixture


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if type(item).__name__ != "SchemathesisFunction" or not item.name.endswith("]"):
            continue
        node_id = getattr(item, "_id", None)
        if node_id is not None and getattr(node_id, "params", "") is None:
            item._id = node_id.with_params(item.name.partition("[")[2].removesuffix("]"))
