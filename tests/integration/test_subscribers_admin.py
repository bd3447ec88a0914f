"""Subscriber management on the embedded runtime: import over HTTP, a campaign, an erasure
that leaves the erased person nowhere in any table while the counts stay."""

from __future__ import annotations

import json
import time
import zlib

import pytest

from mailroom_local import Runtime
from tests.integration.conftest import admin, admin_http, mails_to, wait_for

pytestmark = pytest.mark.integration

CSV = {"Content-Type": "text/csv"}


def everything_stored(runtime: Runtime) -> str:
    """Every attribute of every item of every table, checkpoints decompressed, lower-cased."""
    client = runtime.client("dynamodb")
    texts: list[str] = []
    for name in client.list_tables()["TableNames"]:
        for page in client.get_paginator("scan").paginate(TableName=name, ConsistentRead=True):
            for item in page["Items"]:
                for value in item.values():
                    texts.append(zlib.decompress(value["B"]).decode() if "B" in value else json.dumps(value))
    return "\n".join(texts).lower()


def test_an_erased_subscriber_leaves_no_personal_data_in_any_table(runtime: Runtime) -> None:
    people = "email,name\r\nAda.Erased@Example.com,Ada Erasedname\r\nbob@example.com,Bob\r\ncarol@example.com,Carol\r\n"
    answer = admin_http(runtime, "POST", f"{runtime.api_url}/admin/subscribers/import?confirmed=true", people, CSV)
    assert answer.status == 200, answer.text
    assert answer.json()["imported"] == 3
    campaign = admin(runtime, "POST", "/campaigns", {"subject": "News for {{ name }}", "content": "Hi {{ name }}"})
    admin(runtime, "POST", f"/campaigns/{campaign['id']}/send")
    sent = wait_for(lambda: admin(runtime, "GET", f"/campaigns/{campaign['id']}")["status"] == "sent", timeout=30)
    assert sent, admin(runtime, "GET", f"/campaigns/{campaign['id']}")
    before = admin(runtime, "GET", f"/campaigns/{campaign['id']}")
    assert before["counters"]["sent"] == 3 and mails_to(runtime, "ada.erased@example.com")
    (ada,) = admin(runtime, "GET", "/subscribers?q=ERASEDNAME")["items"]
    assert "ada erasedname" in everything_stored(runtime)

    erased = admin(runtime, "DELETE", f"/subscribers/{ada['id']}")
    assert erased["erased"] and erased["subscriber_deleted"] and erased["records_scrubbed"] >= 1

    stored = everything_stored(runtime)
    assert "ada.erased@example.com" not in stored and "ada erasedname" not in stored
    assert "bob@example.com" in stored
    after = admin(runtime, "GET", f"/campaigns/{campaign['id']}")
    assert after["counters"] == before["counters"] and after["status"] == "sent"
    assert admin_http(runtime, "GET", f"{runtime.api_url}/admin/subscribers/{ada['id']}").status == 404
    assert admin_http(runtime, "DELETE", f"{runtime.api_url}/admin/subscribers/{ada['id']}").status == 404


def test_an_import_without_the_flag_creates_pending_subscribers_and_sends_confirmations(runtime: Runtime) -> None:
    answer = admin_http(
        runtime, "POST", f"{runtime.api_url}/admin/subscribers/import", "email\r\nnew.one@example.com\r\n", CSV
    )
    assert answer.status == 200 and answer.json()["imported"] == 1, answer.text
    (pending,) = admin(runtime, "GET", "/subscribers?q=new.one")["items"]
    assert pending["status"] == "pending" and pending["source"] == "import" and pending["confirmations"] == 1
    mails = wait_for(lambda: mails_to(runtime, "new.one@example.com"), timeout=10)
    assert mails and len(mails) == 1
    time.sleep(0.5)
    assert len(mails_to(runtime, "new.one@example.com")) == 1


def test_bad_imports_are_4xx_json_errors(runtime: Runtime) -> None:
    url = f"{runtime.api_url}/admin/subscribers/import"
    assert admin_http(runtime, "POST", url, {"email": "a@example.com"}).status == 415
    missing = admin_http(runtime, "POST", url, "name\r\nAda\r\n", CSV)
    assert missing.status == 400 and missing.json()["error"]["code"] == "missing_column"
    bad_cursor = admin_http(runtime, "GET", f"{runtime.api_url}/admin/subscribers?cursor=nope")
    assert bad_cursor.status == 400 and bad_cursor.json()["error"]["field"] == "cursor"
