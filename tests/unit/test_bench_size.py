"""bench.size's checks on a small made-up layer: findings, what is kept on purpose, and top-level bytecode."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.coldstart import Probe
from bench.size import DEPENDENCIES, KEPT, Artifact, Sizes, check, entries, summary_rows, table

WHY = "kept on purpose: what the probes on this host cannot see"


@pytest.fixture
def kept_tzdata(monkeypatch: pytest.MonkeyPatch) -> None:
    """KEPT is empty today: the mechanism is tested with a made-up entry."""
    monkeypatch.setitem(KEPT, "tzdata", WHY)


def distribution(root: Path, name: str, version: str, files: dict[str, str]) -> None:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    record = [*files, f"{info.name}/METADATA", f"{info.name}/RECORD"]
    (info / "RECORD").write_text("".join(f"{relative},,\n" for relative in record))


def layer(tmp_path: Path) -> Artifact:
    root = tmp_path / "DependenciesLayer" / "python"
    distribution(root, "tzdata", "2026.6", {"tzdata/__init__.py": "", "tzdata/zoneinfo/UTC": "TZif" * 10})
    distribution(root, "dnspython", "2.9.2", {"dns/__init__.py": "x = 1\n" * 50})
    distribution(root, "typing-extensions", "4.16.0", {"typing_extensions.py": "y = 2\n" * 10})
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "typing_extensions.cpython-313.pyc").write_bytes(b"\0" * 100)
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/usr/bin/python3\n")
    return Artifact(DEPENDENCIES, "layer", root.parent, 0, 0, 0)


def probe(loaded: list[str]) -> Probe:
    return Probe("SomeFunction", None, [], loaded, [], loaded, [])


@pytest.mark.usefixtures("kept_tzdata")
def test_a_package_kept_on_purpose_is_reported_as_kept_with_its_reason_not_as_a_finding(tmp_path: Path) -> None:
    artifact = layer(tmp_path)
    findings, _, kept = check([artifact], [probe(["typing_extensions.py"])])
    assert {(f.check, f.what.split(" ")[0]) for f in findings} == {("scripts", "bin/"), ("unused", "dns")}
    (tzdata,) = kept
    assert (tzdata.artifact, tzdata.distribution, tzdata.why) == (DEPENDENCIES, "tzdata", WHY)
    assert tzdata.what == "tzdata, tzdata-2026.6.dist-info"
    assert tzdata.used_by == []

    result = Sizes(tmp_path, [artifact], findings, [], [probe([])], kept)
    text = "\n".join(table(result))
    assert "Kept on purpose" in text
    assert WHY in text
    (_, wasted) = summary_rows(result)
    assert "kept on purpose: tzdata" in wasted[1]
    assert wasted[3] == "**no**"  # dns and bin/ are findings


@pytest.mark.usefixtures("kept_tzdata")
def test_a_kept_package_that_a_function_loads_says_so(tmp_path: Path) -> None:
    _, _, kept = check([layer(tmp_path)], [probe(["typing_extensions.py", "tzdata", "dns"])])
    assert [k.used_by for k in kept] == [["SomeFunction"]]


def test_the_bytecode_of_a_top_level_module_is_the_modules(tmp_path: Path) -> None:
    artifact = layer(tmp_path)
    found = {entry.name: entry for entry in entries(artifact)}
    assert "__pycache__" not in found
    assert (found["typing_extensions.py"].files, found["typing_extensions.py"].size) == (2, 60 + 100)
    findings, _, _ = check([artifact], [probe(["typing_extensions.py", "dns", "tzdata"])])
    assert [f.check for f in findings] == ["scripts"]


def test_without_kept_packages_an_unused_one_is_a_finding(tmp_path: Path) -> None:
    findings, _, kept = check([layer(tmp_path)], [probe(["typing_extensions.py", "dns"])])
    assert kept == []
    assert {(f.check, f.what.split(" ")[0]) for f in findings} == {("scripts", "bin/"), ("unused", "tzdata")}
