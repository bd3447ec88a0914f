"""scripts/audit_deps.py (`make scan-deps`) with a fake index: no network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support import load_script

audit_deps = load_script("audit_deps")
INDEX = audit_deps.INDEX_URL

VULN = {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-1"], "fixed_in": ["1.0.1"], "details": "bad", "withdrawn": None}


def fake(pages: dict[str, dict[str, Any]]) -> Any:
    """A fetch over the given URL -> JSON pages; any other URL is a 404 (None)."""
    seen: list[str] = []

    def fetch(url: str) -> dict[str, Any] | None:
        seen.append(url)
        return pages.get(url)

    fetch.seen = seen  # type: ignore[attr-defined]
    return fetch


def project(version: str, *vulns: dict[str, Any]) -> dict[str, Any]:
    return {"info": {"version": version}, "vulnerabilities": list(vulns)}


def run(tmp_path: Path, requirements: str, fetch: Any, *args: str) -> int:
    path = tmp_path / "requirements.txt"
    path.write_text(requirements)
    result: int = audit_deps.main([str(path), *args], fetch=fetch)
    return result


def test_latest_pin_with_a_vulnerability_is_a_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "pkg==1.0.0\n", fake({f"{INDEX}/pkg/json": project("1.0.0", VULN)})) == 1
    out = capsys.readouterr().out
    assert "FINDING pkg 1.0.0" in out
    assert "PYSEC-2099-1 (CVE-2099-1), fixed in 1.0.1" in out
    assert "1 audited" in out


def test_withdrawn_vulnerability_is_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    withdrawn = {**VULN, "withdrawn": "2099-02-01T00:00:00Z"}
    assert run(tmp_path, "pkg==1.0.0\n", fake({f"{INDEX}/pkg/json": project("1.0.0", withdrawn)})) == 0
    assert "0 known vulnerabilities, 0 findings" in capsys.readouterr().out


def test_latest_pin_clean_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fetch = fake({f"{INDEX}/pkg/json": project("2.0")})
    assert run(tmp_path, "Pkg==2.0.0\n", fetch) == 0  # PEP 440: 2.0.0 == 2.0; names normalized
    assert fetch.seen == [f"{INDEX}/pkg/json"]  # no per-release request for the latest
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("Pkg"))
    assert line.split()[:5] == ["Pkg", "2.0.0", "2.0", "yes", "none"]


def test_old_pin_without_per_release_json_is_a_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fetch = fake({f"{INDEX}/pkg/json": project("2.0")})
    assert run(tmp_path, "pkg==1.0\n", fetch) == 1
    assert fetch.seen == [f"{INDEX}/pkg/json", f"{INDEX}/pkg/1.0/json"]
    assert "1.0 is not auditable here: upgrade to 2.0" in capsys.readouterr().out


NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def released(days_ago: float) -> list[dict[str, str]]:
    """A release's files, as the project JSON lists them, uploaded ``days_ago`` before NOW."""
    at = NOW - timedelta(days=days_ago)
    return [{"upload_time_iso_8601": at.isoformat().replace("+00:00", "Z")}]


def with_releases(version: str, releases: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    return project(version) | {"releases": releases}


@pytest.mark.parametrize(
    ("releases", "status", "says"),
    [
        # 2.0 came out 3 days ago: a warning, 11 days to upgrade
        (
            {"1.0": released(100), "2.0": released(3)},
            0,
            "WARNING pkg 1.0: 1.0 is not auditable here: a newer release came out 3 days ago; "
            "upgrade to 2.0 within 11 days",
        ),
        # two weeks ago: a finding
        (
            {"1.0": released(100), "2.0": released(14)},
            1,
            "FINDING pkg 1.0: 1.0 is not auditable here (a newer release came out 14 days ago)",
        ),
        # the first newer release counts, not the latest: 1.1 has been out for 40 days
        ({"1.0": released(100), "1.1": released(40), "2.0": released(2)}, 1, "came out 40 days ago"),
        # a pre-release after the pin is no reason to upgrade
        ({"1.0": released(100), "1.1rc1": released(40), "2.0": released(2)}, 0, "came out 2 days ago"),
        # no upload times: nothing says how long the pin has been behind
        ({}, 1, "FINDING pkg 1.0: 1.0 is not auditable here: upgrade to 2.0"),
    ],
)
def test_a_pin_behind_a_new_release_has_a_grace_period(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], releases: dict[str, Any], status: int, says: str
) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("pkg==1.0\nok==1.0\n")  # ok: one package audited
    fetch = fake({f"{INDEX}/ok/json": project("1.0"), f"{INDEX}/pkg/json": with_releases("2.0", releases)})
    assert audit_deps.main([str(path)], fetch=fetch, now=NOW) == status
    out = capsys.readouterr().out
    assert says in out
    assert ("1 warnings" in out) == (status == 0)


def test_the_grace_period_is_a_parameter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("pkg==1.0\nok==1.0\n")  # ok: one package audited
    fetch = fake(
        {
            f"{INDEX}/ok/json": project("1.0"),
            f"{INDEX}/pkg/json": with_releases("2.0", {"1.0": released(100), "2.0": released(3)}),
        }
    )
    assert audit_deps.main([str(path), "--grace-days", "0"], fetch=fetch, now=NOW) == 1
    assert audit_deps.main([str(path), "--grace-days", "4"], fetch=fetch, now=NOW) == 0


def test_old_pin_allowed_with_a_reason_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fetch = fake({f"{INDEX}/pkg/json": project("2.0"), f"{INDEX}/other/json": project("1.0")})
    assert run(tmp_path, "pkg==1.0\nother==1.0\n", fetch, "--allow", "PKG=held back by foo") == 0
    assert "[allowed: held back by foo]" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        run(tmp_path, "pkg==1.0\n", fetch, "--allow", "pkg=")  # a reason is required


def test_allow_does_not_hide_a_vulnerability(tmp_path: Path) -> None:
    fetch = fake({f"{INDEX}/pkg/json": project("1.0", VULN)})
    assert run(tmp_path, "pkg==1.0\n", fetch, "--allow", "pkg=reason") == 1


def test_old_pin_audited_by_its_per_release_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pages = {f"{INDEX}/pkg/json": project("2.0"), f"{INDEX}/pkg/1.0/json": project("2.0", VULN)}
    assert run(tmp_path, "pkg==1.0\n", fake(pages)) == 1
    assert "known vulnerabilities in 1.0" in capsys.readouterr().out
    pages[f"{INDEX}/pkg/1.0/json"] = project("2.0")
    assert run(tmp_path, "pkg==1.0\n", fake(pages)) == 0


def test_unknown_package_is_a_finding(tmp_path: Path) -> None:
    assert run(tmp_path, "pkg==1.0\nnowhere==1.0\n", fake({f"{INDEX}/pkg/json": project("1.0")})) == 1


def test_network_failure_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def down(url: str) -> dict[str, Any] | None:
        raise audit_deps.FetchError(f"{url}: timed out")

    assert run(tmp_path, "pkg==1.0\n", down) == 1
    err = capsys.readouterr().err
    assert "ERROR pkg" in err
    assert "FAILED" in err


def test_nothing_to_audit_fails(tmp_path: Path) -> None:
    assert run(tmp_path, "# only a comment\n-r other.txt\n", fake({})) == 1


def test_http_fetch_retries_then_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def urlopen(request: Any, timeout: float) -> Any:
        calls.append(request.full_url)
        raise audit_deps.urllib.error.URLError("unreachable")

    monkeypatch.setattr(audit_deps.urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(audit_deps.time, "sleep", lambda s: None)
    with pytest.raises(audit_deps.FetchError):
        audit_deps.http_fetch("https://index.invalid/pypi/pkg/json", attempts=3)
    assert len(calls) == 3


def test_parse_requirements() -> None:
    text = """# a comment
-r base.txt
--index-url https://example.invalid/simple
Jinja2==3.1.6    # via -r requirements.in
pydantic[email]==2.13.5 ; python_version >= "3.11"
tzdata==2026.6 \\
    --hash=sha256:abc \\
    --hash=sha256:def
loose>=1.0
"""
    pins = audit_deps.parse_requirements(text, "r.txt")
    assert [(p.name, p.version) for p in pins] == [
        ("Jinja2", "3.1.6"),
        ("pydantic", "2.13.5"),
        ("tzdata", "2026.6"),
        ("loose", None),
    ]


def test_unpinned_requirement_is_a_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "pkg==1.0\nloose>=1\n", fake({f"{INDEX}/pkg/json": project("1.0")})) == 1
    assert "not pinned with ==" in capsys.readouterr().out


def test_installed_skips_editable_installs() -> None:
    names = {audit_deps.normalize_name(p.name) for p in audit_deps.installed_pins()}
    assert "pytest" in names
    assert "mailroom" not in names  # `pip install -e .`
