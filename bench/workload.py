"""What the benchmarks send: one realistic campaign and synthetic subscribers."""

from __future__ import annotations

import uuid
import zlib

from mailroom.models import Subscriber, SubscriberStatus

SUBJECT = "{{ name }}, the December issue of the Mailroom letter"

CONTENT = """# December at Mailroom

Hello {{ name }},

the year is nearly over, and this is the last letter of it. Three things happened this
month that we want you to know about, and one we would like your opinion on.

## 1. Campaigns

You can now write a campaign in **Markdown** or HTML, preview it for any subscriber, send
yourself a test copy and schedule it. Every recipient gets it *at most once*, however often
a queue delivers a task.

## 2. Faster sending

Workers send from many threads at once, paced to the account's sending rate, so a
newsletter to a hundred thousand readers leaves within minutes instead of hours.

## 3. Results you can read

Every recipient has a record: sent, failed (with the reason), skipped or uncertain. The
admin page shows the counters as they move.

| what | before | now |
|---|---|---|
| mails per second | 20 | hundreds |
| retries | by hand | automatic |

> "The best newsletter is the one that arrives." - a reader

What should we build next? [Tell us](https://example.com/feedback?from={{ email }}).

Thanks for reading, {{ name }}.

{{ sender_name }}

---

You get this because you subscribed with {{ email }}.
[Unsubscribe]({{ unsubscribe_url }}) at any time - one click, no questions.
"""

CREATED_AT = "2026-11-28T09:00:00.000Z"


def subscriber(index: int, prefix: str = "reader") -> Subscriber:
    """The ``index``-th synthetic subscriber: a stable id and address, a name with an umlaut."""
    return Subscriber(
        id=str(uuid.UUID(int=(zlib.crc32(prefix.encode()) & 0xFFFF) << 64 | index, version=4)),
        email=f"{prefix}{index:07d}@example.com",
        name=f"Reader Müller {index}",
        status=SubscriberStatus.SUBSCRIBED,
        created_at=CREATED_AT,
        welcome_queued=True,
    )
