"""``make redrive``: show the dead-lettered tasks with their reasons, then move them back.

It talks to the admin API, so the same command serves the local runtime and a deployed
stack::

    make redrive                                   # the local runtime on http://127.0.0.1:3000
    make redrive URL=https://d111111abcdef8.cloudfront.net/api
    python -m mailroom_local.redrive --list        # only show what is there
    python -m mailroom_local.redrive --queue newsletter --limit 100

The admin routes need an admin: ``--email``/``--password`` (or ``$MAILROOM_ADMIN_EMAIL``/
``$MAILROOM_ADMIN_PASSWORD``; ``make run`` prints the local admin's) sign in through
``POST /auth/sign-in``, or ``--token`` (``$MAILROOM_ADMIN_TOKEN``) is an ID token already.

Redrive after the cause is fixed (the reasons say what it was): a redriven task gets its
full budget of retries again and mails nobody twice. Exit status: 0 when done, 1 when the
API answered an error, 2 when it could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

__all__ = ["main"]


def _call(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    if not base.startswith(("http://", "https://")):
        raise urllib.error.URLError(f"not an http(s) URL: {base}")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base.rstrip('/')}{path}", data=data, method=method)  # noqa: S310 - http(s) only
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", token)
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - the URL is the operator's  # nosec B310
        return json.loads(response.read() or b"null")


def _show(listing: dict[str, Any]) -> None:
    counts = listing.get("counts", {})
    print("dead letters: " + ", ".join(f"{queue} {count}" for queue, count in counts.items()))
    for item in listing.get("items", []):
        task = item.get("task", {})
        what = ", ".join(f"{key}={value}" for key, value in task.items() if value is not None)
        print(f"  [{item['queue']}] {what} (received {item.get('receive_count', 0)}x): {item['reason']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailroom_local.redrive", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("MAILROOM_URL") or f"http://127.0.0.1:{os.environ.get('PORT', '3000')}/api",
        help="the API's base URL (default: $MAILROOM_URL, else the local runtime's /api)",
    )
    parser.add_argument("--queue", choices=["welcome", "newsletter", "fanout"], help="one dead-letter queue only")
    parser.add_argument("--limit", type=int, default=1000, help="move at most this many (default 1000)")
    parser.add_argument("--list", action="store_true", help="only show the dead letters, move nothing")
    parser.add_argument(
        "--token", default=os.environ.get("MAILROOM_ADMIN_TOKEN"), help="an admin's ID token (or $MAILROOM_ADMIN_TOKEN)"
    )
    parser.add_argument("--email", default=os.environ.get("MAILROOM_ADMIN_EMAIL"), help="admin to sign in as")
    parser.add_argument("--password", default=os.environ.get("MAILROOM_ADMIN_PASSWORD"), help="the admin's password")
    args = parser.parse_args(argv)
    query = f"?queue={args.queue}" if args.queue else ""
    try:
        if not args.token and args.email and args.password:
            signed_in = _call(args.url, "POST", "/auth/sign-in", {"email": args.email, "password": args.password})
            if "id_token" not in signed_in:
                print("redrive: sign in once in the console to set a password first", file=sys.stderr)
                return 1
            args.token = signed_in["id_token"]
        _show(_call(args.url, "GET", f"/admin/dead-letters{query}", token=args.token))
        if args.list:
            return 0
        body = {"limit": args.limit} | ({"queue": args.queue} if args.queue else {})
        result = _call(args.url, "POST", "/admin/dead-letters/redrive", body, token=args.token)
    except urllib.error.HTTPError as exc:
        print(f"redrive: the API answered {exc.code}: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"redrive: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    moved = result.get("redriven", {})
    print("redriven: " + ", ".join(f"{queue} {count}" for queue, count in moved.items()))
    print("remaining: " + ", ".join(f"{queue} {count}" for queue, count in result.get("remaining", {}).items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
