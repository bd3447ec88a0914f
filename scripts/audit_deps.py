"""Audit pinned Python packages against PyPI's advisories, with only PyPI's project JSON reachable.

``make scan-deps`` runs it on what ships (the Lambda layer's pins) and on the dev virtualenv::

    python scripts/audit_deps.py [REQUIREMENTS ...] [--installed] [--label NAME]
        [--allow NAME=REASON ...] [--index-url URL] [--timeout S]

PyPI's project JSON (``<index-url>/<name>/json``) lists, under ``vulnerabilities``, the
advisories (PyPA advisory database / OSV) that affect the project's *latest* release
(``info.version``). So, per package:

- pin == latest: the pin is audited; each advisory not withdrawn is a finding.
- pin != latest: the per-release JSON (``<index-url>/<name>/<version>/json``) is tried, which
  lists the advisories of that release where it is served (pypi.org). A 404 there (the
  registry of this machine and of CI) leaves the pin *not auditable here*: a finding, "upgrade
  to the latest release (which is audited)", unless ``--allow NAME=REASON`` names it - or the
  first final release after the pin came out less than ``--grace-days`` (14) days ago: then it
  is a warning, with the days left to upgrade. Without the grace, every upstream release would
  turn the build red the day it is published; with it, a pin left behind for two weeks does.
- a package PyPI does not know (404) is a finding: nothing audited it.

A network failure (after retries) is an error, and so is a run that audited no package:
exit 1, never a silent pass. Exit 0 only when every package was audited or allowed and no
advisory applies. The standard library only.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

INDEX_URL = "https://pypi.org/pypi"
GRACE_DAYS = 14
# a final release (or a post-release): no a/b/rc/dev pre-release, which info.version never is
FINAL = re.compile(r"\d+(?:\.\d+)*(?:\.post\d+)?")
TIMEOUT = 15.0
ATTEMPTS = 3
WORKERS = 8

# Given a URL: the parsed JSON, or None for a 404; FetchError when the network failed.
Fetch = Callable[[str], "dict[str, Any] | None"]


class FetchError(Exception):
    """The index could not be read (after retries): nothing can be said about the package."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str | None  # None: not pinned with ==
    source: str


@dataclass
class Result:
    name: str
    pin: str
    latest: str = "-"
    audited: bool = False
    vulns: list[str] = field(default_factory=list)
    finding: str | None = None
    note: str = ""
    warning: str | None = None  # behind the latest release, within the grace period


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def same_version(a: str, b: str) -> bool:
    """PEP 440's equality for the common cases: case, a leading v, trailing .0 release parts."""

    def key(v: str) -> str:
        v = v.strip().lower().removeprefix("v")
        match = re.fullmatch(r"(\d+(?:\.\d+)*)(.*)", v)
        if not match:
            return v
        release = [int(part) for part in match.group(1).split(".")]
        while len(release) > 1 and release[-1] == 0:
            release.pop()
        return ".".join(map(str, release)) + match.group(2)

    return key(a) == key(b)


_REQUIREMENT = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)")


def parse_requirements(text: str, source: str) -> list[Pin]:
    """``name==version`` pins; comments, options (-r, --hash, ...), markers and extras ignored."""
    pins: list[Pin] = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = re.split(r"(?:^|\s)#", raw, maxsplit=1)[0].strip()
        line = line.split(";", 1)[0].strip()  # environment markers
        line = re.split(r"\s--?\w", line, maxsplit=1)[0].strip()  # --hash=... after the pin
        if not line or line.startswith("-"):
            continue
        match = _REQUIREMENT.fullmatch(line)
        if not match:
            pins.append(Pin(line, None, source))
            continue
        spec = match.group(2).replace(" ", "")
        pinned = re.fullmatch(r"===?([^,=<>!~*]+)", spec)
        pins.append(Pin(match.group(1), pinned.group(1) if pinned else None, source))
    return pins


def installed_pins() -> list[Pin]:
    """This interpreter's site-packages, without editable or local-directory installs.

    Metadata elsewhere on sys.path (a source tree's ``*.egg-info`` in the working directory) is
    no installed distribution.
    """
    site = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    pins: list[Pin] = []
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name or Path(str(dist.locate_file(""))).resolve() not in site:
            continue
        direct_url = dist.read_text("direct_url.json")
        if direct_url:
            origin = json.loads(direct_url)
            if "dir_info" in origin or str(origin.get("url", "")).startswith("file:"):
                continue
        pins.append(Pin(name, dist.version, "installed"))
    return pins


def http_fetch(url: str, *, timeout: float = TIMEOUT, attempts: int = ATTEMPTS) -> dict[str, Any] | None:
    error: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(0.5 * 2 ** (attempt - 1))
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - an https index URL
        try:
            # The index URL is https (pypi.org) or what --index-url names.
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - an https index URL  # nosec B310
                data: dict[str, Any] = json.load(response)
                return data
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            error = exc
            if exc.code < 500 and exc.code != 429:
                break
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            error = exc
    raise FetchError(f"{url}: {error}")


def describe(vuln: dict[str, Any]) -> str:
    aliases = ", ".join(sorted(vuln.get("aliases") or []))
    fixed = ", ".join(vuln.get("fixed_in") or []) or "no fixed release"
    return f"{vuln.get('id', '?')}{f' ({aliases})' if aliases else ''}, fixed in {fixed}"


def live_vulns(data: dict[str, Any]) -> list[str]:
    return [describe(v) for v in data.get("vulnerabilities") or [] if not v.get("withdrawn")]


def _first_upload(files: Any) -> datetime | None:
    times = [f.get("upload_time_iso_8601") for f in files or [] if isinstance(f, dict)]
    parsed = [datetime.fromisoformat(str(s).replace("Z", "+00:00")) for s in times if s]
    return min(parsed) if parsed else None


def superseded_at(project: dict[str, Any], version: str) -> datetime | None:
    """When the first final release uploaded after ``version`` came out (None: unknown)."""
    releases: dict[str, Any] = project.get("releases") or {}
    pinned = next((_first_upload(files) for v, files in releases.items() if same_version(v, version)), None)
    if pinned is None:
        return None
    later = [
        at
        for v, files in releases.items()
        if FINAL.fullmatch(v) and not same_version(v, version) and (at := _first_upload(files)) and at > pinned
    ]
    return min(later) if later else None


def audit_one(
    pin: Pin,
    fetch: Fetch,
    index_url: str,
    allow: dict[str, str],
    grace_days: int = GRACE_DAYS,
    now: datetime | None = None,
) -> Result:
    if pin.version is None:
        return Result(pin.name, "-", finding=f"not pinned with == ({pin.source}): cannot be audited")
    result = Result(pin.name, pin.version)
    project = fetch(f"{index_url}/{normalize_name(pin.name)}/json")
    if project is None:
        result.finding = "not on the index (404): not audited"
        return result
    result.latest = str(project.get("info", {}).get("version", "?"))
    if same_version(pin.version, result.latest):
        result.audited, result.vulns = True, live_vulns(project)
    else:
        release = fetch(f"{index_url}/{normalize_name(pin.name)}/{pin.version}/json")
        if release is not None:
            result.audited, result.vulns, result.note = True, live_vulns(release), "per-release JSON"
    if result.vulns:
        result.finding = f"{len(result.vulns)} known vulnerabilities in {pin.version}"
    elif not result.audited:
        reason = allow.get(normalize_name(pin.name))
        since = superseded_at(project, pin.version)
        days = ((now or datetime.now(UTC)) - since).days if since else None
        if reason:
            result.note = f"allowed: {reason}"
        elif days is not None and days < grace_days:
            result.warning = (
                f"{pin.version} is not auditable here: a newer release came out {days} days ago; "
                f"upgrade to {result.latest} within {grace_days - days} days"
            )
        else:
            age = f" (a newer release came out {days} days ago)" if days is not None else ""
            result.finding = (
                f"{pin.version} is not auditable here{age}: upgrade to {result.latest} (audited), or allow it"
            )
    return result


def audit(
    pins: Iterable[Pin],
    fetch: Fetch,
    allow: dict[str, str],
    index_url: str = INDEX_URL,
    grace_days: int = GRACE_DAYS,
    now: datetime | None = None,
) -> tuple[list[Result], list[str]]:
    """Each package once (the first pin of a name wins); the results by name and the fetch errors."""
    unique: dict[str, Pin] = {}
    for pin in pins:
        unique.setdefault(normalize_name(pin.name), pin)
    errors: list[str] = []

    def run(pin: Pin) -> Result | None:
        try:
            return audit_one(pin, fetch, index_url, allow, grace_days, now)
        except FetchError as exc:
            errors.append(f"{pin.name}: {exc}")
            return None

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = [r for r in pool.map(run, unique.values()) if r is not None]
    return sorted(results, key=lambda r: normalize_name(r.name)), sorted(errors)


def table(results: Sequence[Result]) -> str:
    rows = [("package", "pin", "latest", "audited", "vulnerabilities")]
    for r in results:
        status = "; ".join(r.vulns) if r.vulns else ("none" if r.audited else "-")
        parts = (r.note, f"FINDING: {r.finding}" if r.finding else "", f"WARNING: {r.warning}" if r.warning else "")
        extra = ", ".join(part for part in parts if part)
        rows.append(
            (r.name, r.pin, r.latest, "yes" if r.audited else "no", f"{status}{f'  [{extra}]' if extra else ''}")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] for row in rows)


def parse_allow(entries: Iterable[str]) -> dict[str, str]:
    allow: dict[str, str] = {}
    for entry in entries:
        name, _, reason = entry.partition("=")
        if not reason.strip():
            raise SystemExit(f"--allow {entry!r}: NAME=REASON, with a reason")
        allow[normalize_name(name.strip())] = reason.strip()
    return allow


def main(argv: Sequence[str] | None = None, fetch: Fetch | None = None, now: datetime | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("requirements", nargs="*", type=Path, help="requirement files with name==version pins")
    parser.add_argument("--installed", action="store_true", help="audit this interpreter's installed distributions")
    parser.add_argument("--label", default="", help="what is audited, for the summary line")
    parser.add_argument("--allow", action="append", default=[], metavar="NAME=REASON", help="accept an unauditable pin")
    parser.add_argument("--index-url", default=INDEX_URL)
    parser.add_argument(
        "--grace-days", type=int, default=GRACE_DAYS, help="days a pin may stay behind a new release unaudited"
    )
    parser.add_argument("--timeout", type=float, default=TIMEOUT)
    args = parser.parse_args(argv)

    pins: list[Pin] = []
    for path in args.requirements:
        pins += parse_requirements(path.read_text(encoding="utf-8"), str(path))
    if args.installed:
        pins += installed_pins()
    label = args.label or ", ".join([str(p) for p in args.requirements] + (["installed"] if args.installed else []))
    if not pins:
        print(f"audit_deps ({label}): nothing to audit - no pins found", file=sys.stderr)
        return 1
    allow = parse_allow(args.allow)

    def default_fetch(url: str) -> dict[str, Any] | None:
        return http_fetch(url, timeout=args.timeout)

    results, errors = audit(pins, fetch or default_fetch, allow, args.index_url.rstrip("/"), args.grace_days, now)
    print(table(results))
    audited = sum(r.audited for r in results)
    vulns = sum(len(r.vulns) for r in results)
    findings = [r for r in results if r.finding]
    print(
        f"audit_deps ({label}): {len(results) + len(errors)} packages, {audited} audited "
        f"({sum(r.note == 'per-release JSON' for r in results)} by their per-release JSON), "
        f"{sum(r.note.startswith('allowed') for r in results)} not auditable and allowed, "
        f"{vulns} known vulnerabilities, {len(findings)} findings, "
        f"{sum(r.warning is not None for r in results)} warnings, {len(errors)} errors"
    )
    for r in results:
        if r.warning:
            print(f"  WARNING {r.name} {r.pin}: {r.warning}")
    for r in findings:
        print(f"  FINDING {r.name} {r.pin}: {r.finding}")
        for v in r.vulns:
            print(f"    {v}")
    for error in errors:
        print(f"  ERROR {error}", file=sys.stderr)
    unused = sorted(set(allow) - {normalize_name(r.name) for r in results if r.note.startswith("allowed")})
    for name in unused:
        print(f"  note: --allow {name} matched no unauditable pin (remove it?)")
    if errors:
        print(f"audit_deps ({label}): the index could not be read: FAILED", file=sys.stderr)
        return 1
    if not audited:
        print(f"audit_deps ({label}): no package could be audited: FAILED", file=sys.stderr)
        return 1
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
